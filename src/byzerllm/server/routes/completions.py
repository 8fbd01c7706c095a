"""``POST /v1/completions``: OpenAI's (legacy) text completions: raw text, no chat template."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ...errors import InvalidRequestError
from ...types import SingleOutputMeta
from ..responses import (
    CompletionResponse,
    CompletionResponseChoice,
    CompletionResponseStreamChoice,
    CompletionStreamResponse,
    UsageInfo,
)
from ..schemas import CompletionRequest
from ..state import ServerDep
from .generation import Chunks, first, generation_route, now, prepare, sse_stream, usage

ENDPOINT = "/v1/completions"

router = APIRouter()


class _CompletionChunks(Chunks):
    endpoint = ENDPOINT

    def chunk(self, choices: list[Any], usage: UsageInfo | None = None) -> CompletionStreamResponse:
        return CompletionStreamResponse(
            id=self.cid, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def piece(self, text: str, meta: SingleOutputMeta) -> CompletionResponseStreamChoice | None:
        return CompletionResponseStreamChoice(index=0, text=text) if text else None

    def finish(self, finish_reason: str) -> CompletionResponseStreamChoice:
        return CompletionResponseStreamChoice(index=0, text="", finish_reason=finish_reason)


@generation_route(router, ENDPOINT, CompletionResponse, CompletionStreamResponse)
async def completions(body: CompletionRequest, srv: ServerDep) -> CompletionResponse | StreamingResponse:
    llm = srv.llm
    name, config = await prepare(srv, body)
    extra: dict[str, Any] = {}
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise InvalidRequestError("prompt must be one string (or a list of one)", param="prompt")
    if body.suffix or (body.best_of or 1) > 1:
        raise InvalidRequestError("suffix and best_of are not supported", param="suffix" if body.suffix else "best_of")
    cid, created, start = "cmpl-" + uuid.uuid4().hex, now(), time.perf_counter()
    if body.stream:
        items = llm.async_stream_completion(prompts[0], model=name, llm_config=config, extra_request_params=extra)
        head = await first(items, srv)
        return StreamingResponse(
            sse_stream(srv, _CompletionChunks(cid, created, body.model), items, head, start, body.stream_options),
            media_type="text/event-stream",
        )
    r = await srv.timed(llm.async_completion(prompts[0], model=name, llm_config=config, extra_request_params=extra))
    srv.metrics.done(ENDPOINT, body.model, time.perf_counter() - start, r.metadata.get("first_token_time"), r.metadata)
    text = (prompts[0] if body.echo else "") + r.output
    return CompletionResponse(
        id=cid,
        created=created,
        model=body.model,
        choices=[CompletionResponseChoice(index=0, text=text, finish_reason=r.metadata["finish_reason"])],
        usage=usage(r.metadata),
    )
