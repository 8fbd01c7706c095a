"""The backend interface: one engine or provider behind one small class.

A backend knows nothing of Ray or HTTP. It is built from a model path and its options, and
turns one ``ChatRequest`` into a stream of ``ChatChunk`` (text deltas; the last chunk carries
the finish reason and token counts). ``chat`` collects that stream, so streaming and
non-streaming calls share one code path.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from ..errors import InvalidRequestError, UnsupportedParameterError
from ..params import ENGINE_KEYS, TYPED_KEYS, closest
from ..types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ImageRequest,
    ImageResponse,
    SpeechRequest,
    SpeechResponse,
    Transcription,
    TranscriptionRequest,
)
from .options import BackendOptions, validate_options

Cancelled = Callable[[], bool]
# the backend method that serves each unary non-embedding task
TASK_METHODS = {"speech": "speech", "transcription": "transcribe", "image": "generate_images"}
log = logging.getLogger("byzerllm.backends")


def _never() -> bool:
    return False


class Backend(ABC):
    """Base class of every backend.

    Subclasses set ``name``, ``Options`` (their deploy options as a ``BackendOptions`` model:
    types, defaults, bounds, descriptions), ``request_options`` (accepted keys of
    ``ChatRequest.extra``) and their capabilities (``tasks``, ``supports_tool_calls``), and implement
    ``stream`` and ``meta``. ``thread_safe = False`` makes a worker serialise the requests of one
    instance. ``self.config`` is the checked options as a dict, defaults filled in.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    request_options: ClassVar[frozenset[str]] = frozenset()
    thread_safe: ClassVar[bool] = False
    # what a deployment serves: "chat" (chat and completions), "embed", "rerank", "speech",
    # "transcription", "image" (types.TASKS); a chat backend that reads image or audio parts says so
    # in its meta (``input_modalities``)
    tasks: ClassVar[tuple[str, ...]] = ("chat",)
    supports_tool_calls: ClassVar[bool] = False

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        self.model_path = model_path
        self.config = self.check_options(options)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` checked against ``Options`` and merged over its defaults (text values typed,
        see ``options.validate_options``). Raises ``UnsupportedParameterError`` for an unknown key
        (naming the closest accepted one) and ``InvalidRequestError`` for a bad value."""
        return validate_options(cls.name, cls.Options, options)

    @classmethod
    def deploy_options(cls, options: dict[str, Any], worker_concurrency: int) -> dict[str, Any]:
        """The options a deployment's workers get, from the ones given: a backend whose engine needs
        the deployment's shape (an engine process batching ``worker_concurrency`` sequences) fills it
        in here. The default is ``options`` unchanged."""
        return options

    def capabilities(self) -> dict[str, Any]:
        """The meta keys that come from the class's declaration: ``tasks``, ``support_stream``,
        ``support_tool_calls``; ``meta()`` may refine them for one instance."""
        return {
            "tasks": list(self.tasks),
            "support_stream": "chat" in self.tasks,
            "input_modalities": ["text"],
            "support_tool_calls": self.supports_tool_calls,
        }

    def get_meta(self) -> dict[str, Any]:
        """``capabilities()`` with ``meta()`` over them, and ``options``: the deploy options in effect
        (defaults filled in, secrets masked)."""
        from ..runtime.spec import mask_secrets

        return {**self.capabilities(), **self.meta(), "options": mask_secrets(self.config)}

    def check_request(self, request: ChatRequest) -> None:
        """Reject ``request.extra`` keys this backend does not know (by name), native tools on a
        backend that cannot call them, and image or audio parts for a model that does not read them
        (``input_modalities``); a chat request to a deployment that serves no chat."""
        if "chat" not in (self.capabilities().get("tasks") or ()):
            raise self._not_served("chat")
        self._check_modalities(request)
        if request.tools and not self.meta().get("support_tool_calls", self.supports_tool_calls):
            raise UnsupportedParameterError(
                f"the {self.name} backend has no native tool calling; use chat_oai(tools=...), which works "
                "on any backend",
                param="tools",
            )
        for key in list(request.extra):
            if key in self.request_options:
                continue
            if key in ENGINE_KEYS:  # a real engine's key this backend has no use for: ignored, as there
                log.debug("generation parameter %r is ignored by the %s backend", key, self.name)
                del request.extra[key]
                continue
            near = closest(key, {*self.request_options, *TYPED_KEYS, *ENGINE_KEYS})
            raise UnsupportedParameterError(
                f"generation parameter {key!r} is not supported by the {self.name} backend"
                + (f"; did you mean {near!r}?" if near else "")
                + "; accepted: max_length, temperature, top_p, stop, seed"
                + (", " + ", ".join(sorted(self.request_options)) if self.request_options else ""),
                param=key,
                accepted=sorted(self.request_options),
            )

    def _check_modalities(self, request: ChatRequest) -> None:
        kinds = {"image_url": "image", "input_audio": "audio"}
        accepted: list[str] | None = None
        for index, msg in enumerate(request.messages):
            content = msg.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                kind = kinds.get(part.get("type")) if isinstance(part, dict) else None
                if kind is None:
                    continue
                if accepted is None:
                    accepted = {**self.capabilities(), **self.meta()}.get("input_modalities") or ["text"]
                if kind not in accepted:
                    raise InvalidRequestError(
                        f"conversations[{index}] has an {kind} part, but this {self.name} model takes "
                        f"{', '.join(accepted)} only",
                        param=f"conversations[{index}].content",
                        accepted=list(accepted),
                    )

    @abstractmethod
    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        """Yield text deltas as they are generated; stop early when ``cancelled()`` is true."""

    def chat(self, request: ChatRequest, cancelled: Cancelled = _never) -> ChatResponse:
        """Run ``stream`` to the end and return the joined text with counts and timings."""
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        last = ChatChunk("")
        for chunk in self.stream(request, cancelled):
            if chunk.delta:
                if first is None:
                    first = time.perf_counter() - start
                parts.append(chunk.delta)
            last = chunk
        cost = time.perf_counter() - start
        return ChatResponse(
            text="".join(parts),
            finish_reason=last.finish_reason,
            input_tokens=last.input_tokens,
            generated_tokens=last.generated_tokens,
            first_token_time=cost if first is None else first,
            time_cost=cost,
        )

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Embedding vectors of ``texts`` and the number of input tokens. Raises
        ``InvalidRequestError`` when the backend does not serve embeddings."""
        raise self._not_served("embed")

    def embed_query(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors of search queries. Models trained with distinct query and passage inputs (E5's
        ``query:`` / ``passage:`` prefixes) override this; the default is ``embed``."""
        return self.embed(texts)

    def rerank(self, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        """Relevance score of each ``(query, passage)`` pair (higher is more relevant) and the
        number of input tokens.

        The default is the embedding-similarity fallback: the cosine similarity (in [-1, 1]) of the
        query's vector (``embed_query``) and the passage's (``embed``). Backends with a reranking
        model (a cross-encoder) or a chat model (LLM-as-judge) override it. Raises
        ``InvalidRequestError`` when the backend serves neither embeddings nor a reranker.
        """
        queries = sorted({q for q, _ in pairs})
        passages = sorted({p for _, p in pairs})
        qv, qt = self.embed_query(queries)
        pv, pt = self.embed(passages)
        q_index = {q: _unit(v) for q, v in zip(queries, qv, strict=True)}
        p_index = {p: _unit(v) for p, v in zip(passages, pv, strict=True)}
        return [sum(a * b for a, b in zip(q_index[q], p_index[p], strict=True)) for q, p in pairs], qt + pt

    def speech(self, request: SpeechRequest) -> SpeechResponse:
        """Speak ``request.input``. Raises ``InvalidRequestError`` naming ``voice`` or
        ``response_format`` when unknown, or ``model`` when the backend does not serve speech."""
        raise self._not_served("speech")

    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        """Transcribe ``request.audio``. Raises ``InvalidRequestError`` (``param="file"``) when it is not
        audio, or naming ``model`` when the backend does not serve transcription."""
        raise self._not_served("transcription")

    def generate_images(self, request: ImageRequest) -> ImageResponse:
        """Draw ``request.n`` images of ``request.prompt``. Raises ``InvalidRequestError`` naming ``size``
        or ``n`` when out of the model's range, or ``model`` when the backend does not draw."""
        raise self._not_served("image")

    def _not_served(self, task: str) -> InvalidRequestError:
        """The error for a request of a ``task`` this deployment does not serve (``param="model"``,
        ``accepted``: the tasks it serves)."""
        served = list({**self.capabilities(), **self.meta()}.get("tasks") or self.tasks)
        return InvalidRequestError(
            f"this {self.name} deployment serves {', '.join(served)}, not {task}",
            param="model",
            accepted=served,
        )

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """Describe the loaded model: backend, max_model_len, support_stream,
        support_chat_template, architectures, and anything else a client can use."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model; the default does nothing."""


def text_messages(request: ChatRequest, backend: str) -> tuple[list[dict[str, Any]], str]:
    """``request.messages`` with text content only (the text parts of a list joined), and the
    assistant text to continue when ``request.continue_final_message`` (then taken off the
    messages; else ""). Raises ``InvalidRequestError`` naming the message with a non-text part
    (``backend`` takes text only) or a continuation without a final assistant message."""
    messages = []
    for index, msg in enumerate(request.messages):
        content = msg.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if not (isinstance(part, dict) and part.get("type", "text") == "text" and "text" in part):
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise InvalidRequestError(
                        f"conversations[{index}] has a {kind!r} part; the {backend} backend takes text only",
                        param=f"conversations[{index}].content",
                    )
                texts.append(part["text"])
            content = "".join(texts)
        messages.append({"role": msg["role"], "content": content or ""})
    prefill = ""
    if request.continue_final_message:
        if not messages or messages[-1]["role"] != "assistant":
            raise InvalidRequestError(
                "continue_final_message needs the last message to be an assistant message", param="messages"
            )
        prefill = messages.pop()["content"]
    return messages, prefill


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def check_input_length(request: ChatRequest, tokens: int, estimated: bool = False) -> None:
    """Raise ``InvalidRequestError`` (``param="messages"``) when a prompt of ``tokens`` tokens is over
    the request's ``max_input_tokens`` (the client's ``setup_max_input_length``)."""
    limit = request.max_input_tokens
    if limit is not None and tokens > limit:
        how = "about " if estimated else ""
        raise InvalidRequestError(
            f"the input is {how}{tokens} tokens, over the max input length {limit} (setup_max_input_length)",
            param="messages",
        )


def estimated_tokens(request: ChatRequest) -> int:
    """An estimate of a request's prompt tokens for backends that cannot tokenize (SaaS): one token
    per 4 UTF-8 bytes of its text, OpenAI's rule of thumb for English ("a token is about 4
    characters"); other scripts have fewer bytes per token, so the estimate errs low and an input
    is refused only when it is clearly too long."""
    text = (
        request.prompt
        if request.prompt is not None
        else "".join(
            c if isinstance(c, str) else "".join(p.get("text", "") for p in c if isinstance(p, dict))
            for c in (m.get("content") or "" for m in request.messages)
        )
    )
    return len(text.encode("utf-8")) // 4
