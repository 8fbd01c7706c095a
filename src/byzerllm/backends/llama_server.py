"""GGUF models on llama.cpp's own ``llama-server``: an engine process per worker that decodes the
worker's concurrent requests together (continuous batching), talked to over its OpenAI-compatible
API (``backends.engine``). ``scripts/install.sh`` builds the binary with portable CPU flags.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from ..errors import BackendError, ModelPathError
from .engine import EngineBackend
from .llama_cpp import GGUFEmbeddingOptions, check_pooling, gguf_metadata, pooling_for
from .models import resolve_model_path


class LlamaServerOptions(GGUFEmbeddingOptions):
    n_threads: int = Field(2, ge=1, description="CPU threads of the engine, shared by its sequences")
    parallel: int | None = Field(
        None, ge=1, description="sequences decoded together (default: the deployment's worker_concurrency)"
    )
    max_model_len: int = Field(4096, ge=64, description="context length of each sequence, in tokens")
    n_batch: int = Field(512, ge=1, description="prompt tokens per decode call")
    timeout: float = Field(600.0, gt=0, description="seconds a request may take")
    start_timeout: float = Field(300.0, gt=0, description="seconds the engine may take to load the model")
    mmproj: str | None = Field(
        None, description="a multimodal projector GGUF (mmproj) for a vision model: image parts are then read"
    )
    extra_args: list[str] | None = Field(None, description="more llama-server flags, as on its command line")


def llama_server_binary() -> str:
    """The ``llama-server`` next to this Python (``scripts/install.sh`` links it there), else on PATH."""
    local = Path(sys.executable).parent / "llama-server"
    found = str(local) if local.exists() else shutil.which("llama-server")
    if not found:
        raise BackendError(
            "llama-server is not installed: scripts/install.sh builds it (scripts/build_llama_server.sh)"
        )
    return found


def llama_server_command(binary: str, model: str, port: int, cfg: dict[str, Any]) -> list[str]:
    """The command line of a llama-server for ``model`` on ``port``: ``parallel`` sequences with
    continuous batching, each with ``max_model_len`` tokens of context (llama-server divides
    ``--ctx-size`` among its slots), the GGUF's chat template through its Jinja engine; with
    ``embedding``, its ``/v1/embeddings`` pooled as ``pooling`` (mean, cls or last) instead of chat;
    with ``mmproj``, the projector that lets a vision model read image parts (llama.cpp's mtmd)."""
    parallel = cfg["parallel"] or 1
    # an embedding engine pools each input to one vector (``pooling`` resolved from the GGUF first)
    embedding = ["--embeddings", "--pooling", cfg["pooling"]] if cfg["embedding"] else []
    vision = ["--mmproj", cfg["mmproj"]] if cfg.get("mmproj") else []
    return [
        binary,
        "--model", model,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--threads", str(cfg["n_threads"]),
        "--threads-batch", str(cfg["n_threads"]),
        "--parallel", str(parallel),
        "--cont-batching",
        "--ctx-size", str(cfg["max_model_len"] * parallel),
        "--batch-size", str(cfg["n_batch"]),
        "--jinja",
        *embedding,
        *vision,
        *(cfg["extra_args"] or []),
    ]  # fmt: skip


class LlamaServerBackend(EngineBackend):
    """GGUF models on a ``llama-server`` this worker starts (see ``EngineBackend``): chat, or with
    ``embedding=true`` embeddings (and rerank by their cosine similarity). Raises
    ``ModelPathError`` for a missing GGUF and ``BackendError`` when the engine cannot start."""

    name = "llama_server"
    engine_name = "llama-server"
    Options = LlamaServerOptions
    request_options = frozenset(
        {"top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "ignore_eos"}
    )

    @classmethod
    def deploy_options(cls, options: dict[str, Any], worker_concurrency: int) -> dict[str, Any]:
        """``parallel`` follows the deployment's ``worker_concurrency`` unless set."""
        return options if options.get("parallel") is not None else {**options, "parallel": worker_concurrency}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """As ``Backend.check_options``, and ``pooling`` as on ``llama_cpp`` (``check_pooling``)."""
        return check_pooling(super().check_options(options))

    def prepare(self, model_path: str) -> None:
        self.path = resolve_model_path(model_path)
        self.binary = llama_server_binary()
        self.embedding_dim = None
        if self.config["embedding"]:  # auto pooling as llama_cpp resolves it, so both give one vector
            self.served_tasks = ("embed", "rerank")
            md = gguf_metadata(self.path)
            self.config["pooling"] = pooling_for(self.path, self.config["pooling"], md)
            self.embedding_dim = md.get(f"{md.get('general.architecture')}.embedding_length")
        if self.config["mmproj"]:
            mmproj = Path(self.config["mmproj"]).expanduser()
            if not mmproj.is_file():
                raise ModelPathError(f"mmproj file does not exist: {mmproj}", param="mmproj", path=str(mmproj))
            self.config["mmproj"] = str(mmproj)

    def command(self, port: int) -> list[str]:
        return llama_server_command(self.binary, self.path, port, self.config)

    def engine_meta(self) -> dict[str, Any]:
        return {
            "model_path": self.path,
            "model_name": Path(self.path).stem,
            "max_model_len": self.config["max_model_len"],
            "parallel": self.config["parallel"] or 1,
            "n_threads": self.config["n_threads"],
            "model_type": "embedding" if self.config["embedding"] else "chat",
            "tasks": list(self.served_tasks),
            "support_stream": not self.config["embedding"],
            "input_modalities": ["text", "image"] if self.config["mmproj"] else ["text"],
            "pooling": self.config["pooling"] if self.config["embedding"] else None,
            "embedding_dim": int(self.embedding_dim) if self.embedding_dim else None,
        }
