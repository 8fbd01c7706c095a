"""A backend without a model: it answers with the words of the last user message, one token per
word. For tests and load experiments of routing, queueing, cancellation and counting, in seconds
and on any machine (``--infer_backend echo``), as simonw/llm registers its test models.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InvalidRequestError
from ..types import ChatChunk, ChatRequest
from .base import Backend, Cancelled, _never, check_input_length
from .options import BackendOptions


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class EchoOptions(BackendOptions):
    token_delay: float = Field(0.0, ge=0, description="seconds before each generated word")
    max_model_len: int = Field(4096, ge=1, description="context length in tokens (one token per word)")


class EchoBackend(Backend):
    """Echo the last user message (or a completion prompt) word by word.

    Deploy options: ``token_delay`` (seconds before each generated word, default 0),
    ``max_model_len`` (tokens, default 4096). A prompt counts one token per word of every message.
    With ``ignore_eos`` the words repeat until ``max_length``; otherwise the answer ends after the
    last word (finish_reason ``stop``) or at ``max_length`` (``length``). Embeddings are
    ``[words, characters, 1.0]``. Raises ``InvalidRequestError`` for a prompt over
    ``max_model_len``.
    """

    name = "echo"
    Options = EchoOptions
    tasks = ("chat", "embed", "rerank")
    request_options = frozenset({"ignore_eos"})
    thread_safe = True

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        if request.prompt is not None:
            prompt, words = request.prompt, request.prompt.split()
        else:
            prompt = " ".join(_text(m.get("content")) for m in request.messages)
            users = [m for m in request.messages if m.get("role") == "user"] or request.messages
            words = _text(users[-1].get("content")).split()
        input_tokens = len(prompt.split())
        check_input_length(request, input_tokens)
        if input_tokens > self.config["max_model_len"]:
            raise InvalidRequestError(
                f"the prompt is {input_tokens} tokens; max_model_len is {self.config['max_model_len']}",
                param="messages",
            )
        limit = request.max_tokens or self.config["max_model_len"]
        source = itertools.cycle(words or ["echo"]) if request.extra.get("ignore_eos") else iter(words)
        generated, finish = 0, "stop"
        for word in source:
            if generated == limit:
                finish = "length"
                break
            if cancelled():
                finish = "cancelled"
                break
            if self.config["token_delay"]:
                time.sleep(self.config["token_delay"])
            generated += 1
            yield ChatChunk(word if generated == 1 else " " + word, None, input_tokens, generated)
        yield ChatChunk("", finish, input_tokens, generated)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """``[words, characters, 1.0]`` per text, and the words of all texts."""
        return [[float(len(t.split())), float(len(t)), 1.0] for t in texts], sum(len(t.split()) for t in texts)

    def meta(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model_type": "chat",
            "max_model_len": self.config["max_model_len"],
            "support_stream": True,
            "support_chat_template": True,
            "support_response_format": [],
            "architectures": [],
            "embedding_dim": 3,
        }
