"""What chat and text completions share: the client's sampling options, usage, and the SSE
stream of chunks."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, ClassVar

from fastapi import APIRouter
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from ...errors import ByzerLLMError, InvalidRequestError
from ...types import SingleOutputMeta
from ..errors import error_body, request_param
from ..responses import UsageInfo
from ..schemas import ChatCompletionRequest, CompletionRequest, StreamOptions
from ..state import Server
from .common import MODEL_ERRORS, error_responses, event_stream

DONE = "data: [DONE]\n\n"


def now() -> int:
    return int(time.time())


def generation_route(
    router: APIRouter, path: str, response: type[BaseModel], chunk: type[BaseModel]
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``router.post`` for a generation endpoint: ``response`` is the body, or with ``stream:
    true`` server-sent events of ``chunk``s; the error statuses of a request to a deployment."""
    return router.post(
        path,
        response_model=response,
        response_description=f"A {response.__name__}; with `stream: true`, server-sent events of its chunks.",
        responses={200: {"content": event_stream(chunk)}, **error_responses(*MODEL_ERRORS)},
    )


async def prepare(srv: Server, body: ChatCompletionRequest | CompletionRequest) -> tuple[str, dict[str, Any]]:
    """The deployment ``body.model`` names and its ``llm_config``; raises ``InvalidRequestError``
    for ``max_tokens`` over its context and for what ``sampling`` refuses."""
    name = srv.deployment(body.model)
    await srv.check_max_tokens(name, body)
    return name, sampling(body)


def sampling(body: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    """The client's ``llm_config`` for an OpenAI request; raises ``InvalidRequestError`` for
    ``n > 1`` and ``logprobs``, which no deployment serves."""
    if body.n != 1:
        raise InvalidRequestError("n > 1 is not supported: send one request per completion", param="n")
    if body.logprobs:
        raise InvalidRequestError("logprobs are not supported", param="logprobs")
    config: dict[str, Any] = {}
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    for key, value in (
        ("max_length", max_tokens),
        ("temperature", body.temperature),
        ("top_p", body.top_p),
        ("stop", body.stop),
        ("seed", body.seed),
        ("presence_penalty", body.presence_penalty),
        ("frequency_penalty", body.frequency_penalty),
        ("top_k", body.top_k),
        ("min_p", body.min_p),
        ("repetition_penalty", body.repetition_penalty),
        ("ignore_eos", body.ignore_eos),
    ):
        if value is not None and value != []:
            config[key] = value
    return config


def usage(meta: dict[str, Any]) -> UsageInfo:
    """OpenAI's usage for the client's counts (``input_tokens_count``, ``generated_tokens_count``)."""
    prompt, completion = meta.get("input_tokens_count", 0), meta.get("generated_tokens_count", 0)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def sse(body: BaseModel) -> str:
    return f"data: {body.model_dump_json()}\n\n"


async def first(items: AsyncIterator[tuple[str, SingleOutputMeta]], srv: Server) -> tuple[str, SingleOutputMeta] | None:
    """The first item of a stream, awaited before the response starts, so that errors such as an
    unknown parameter still get their HTTP status instead of a broken stream."""
    try:
        return await srv.timed(items.__anext__())
    except StopAsyncIteration:
        return None


async def _relay(
    items: AsyncIterator[tuple[str, SingleOutputMeta]], head: tuple[str, SingleOutputMeta] | None
) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
    """``head`` then the rest of ``items``; closes ``items`` (an async generator, as the client's
    are) when the caller stops: a client that disconnects cancels the generation on the worker."""
    try:
        if head is None:
            return
        yield head
        async for item in items:
            yield item
    finally:
        if isinstance(items, AsyncGenerator):
            await items.aclose()


class Chunks(ABC):
    """The chunks of one streamed response (``id``, ``created``, ``model`` as in the whole
    response): ``chunk`` wraps choices, ``opening`` is the choice sent before the first token
    (None: none), ``piece`` the choice of one ``(text, meta)`` from the client (None: skip it),
    ``finish`` the last choice."""

    endpoint: ClassVar[str]

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.cid, self.created, self.model = cid, created, model

    @abstractmethod
    def chunk(self, choices: list[Any], usage: UsageInfo | None = None) -> BaseModel: ...

    def opening(self) -> BaseModel | None:
        return None

    @abstractmethod
    def piece(self, text: str, meta: SingleOutputMeta) -> BaseModel | None: ...

    @abstractmethod
    def finish(self, finish_reason: str) -> BaseModel: ...


async def sse_stream(
    srv: Server,
    chunks: Chunks,
    items: AsyncIterator[tuple[str, SingleOutputMeta]],
    head: tuple[str, SingleOutputMeta] | None,
    start: float,
    options: StreamOptions | None,
) -> AsyncIterator[str]:
    """SSE events: the chunks of ``head`` (the first item, already awaited) and the rest of
    ``items``, the final chunk with usage, the usage-only chunk when asked, ``[DONE]``. An error
    after the headers travels as a last ``data: {"error": ...}`` event."""
    opening = chunks.opening()
    if opening is not None:
        yield sse(chunks.chunk([opening]))
    meta, ttft = None, None
    try:
        async for text, meta in _relay(items, head):
            choice = chunks.piece(text, meta)
            if choice is not None:
                ttft = ttft or time.perf_counter() - start
                yield sse(chunks.chunk([choice]))
    except ByzerLLMError as exc:  # after the headers: the error travels in the stream
        srv.metrics.error(chunks.endpoint, exc.status_code)
        param = request_param(getattr(exc, "param", None), chunks.endpoint)
        yield sse(error_body(str(exc), exc.error_type, param))
        yield DONE
        return
    stats = meta.to_dict() if meta else {}
    counts = usage(stats)
    yield sse(chunks.chunk([chunks.finish((meta.finish_reason if meta else None) or "stop")], counts))
    if options is not None and options.include_usage:
        yield sse(chunks.chunk([], counts))
    yield DONE
    srv.metrics.done(chunks.endpoint, chunks.model, time.perf_counter() - start, ttft, stats)
