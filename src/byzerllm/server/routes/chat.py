"""``POST /v1/chat/completions``: OpenAI's chat completions, streamed or not, with tools and
``response_format``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from ...errors import InvalidRequestError
from ...types import SingleOutputMeta
from ..responses import (
    ChatCompletionResponse,
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse,
    ChatMessage,
    DeltaMessage,
    ToolCallDelta,
    UsageInfo,
)
from ..schemas import ChatCompletionRequest, FunctionCall, Message, ToolCallItem, ToolChoiceFunction
from ..state import ServerDep
from .generation import Chunks, first, generation_route, now, prepare, sse_stream, usage

ENDPOINT = "/v1/chat/completions"

router = APIRouter()


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        msg = m.model_dump(exclude_none=True)
        if msg["role"] == "developer":
            msg["role"] = "system"
        if msg.get("tool_calls") and not msg.get("content"):
            msg["content"] = json.dumps([c["function"] for c in msg["tool_calls"]], ensure_ascii=False)
        if msg["role"] == "tool" and msg.get("content") is None:
            msg["content"] = ""
        out.append(msg)
    return out


def _continues(body: ChatCompletionRequest, messages: list[dict[str, Any]]) -> bool:
    """Whether the last message is an assistant message to continue: vLLM's
    ``continue_final_message`` (with ``add_generation_prompt: false``) or DeepSeek's
    ``"prefix": true`` on it. Raises ``InvalidRequestError`` when that message is not an assistant's."""
    prefix = messages[-1].pop("prefix", False)
    for m in messages[:-1]:
        m.pop("prefix", None)
    if not (body.continue_final_message or prefix):
        return False
    if messages[-1]["role"] != "assistant":
        param = "continue_final_message" if body.continue_final_message else f"messages.{len(messages) - 1}.prefix"
        raise InvalidRequestError("continuing a message needs the last message to be an assistant message", param=param)
    return True


def _response_format(body: ChatCompletionRequest) -> dict[str, Any] | None:
    rf = body.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "json_object"}
    if rf.json_schema is None or not rf.json_schema.schema_:
        raise InvalidRequestError(
            "response_format.json_schema.schema is required for type json_schema", param="response_format.json_schema"
        )
    return {"type": "json_schema", "json_schema": {"name": rf.json_schema.name, "schema": rf.json_schema.schema_}}


class _ChatChunks(Chunks):
    endpoint = ENDPOINT

    def chunk(self, choices: list[Any], usage: UsageInfo | None = None) -> ChatCompletionStreamResponse:
        return ChatCompletionStreamResponse(
            id=self.cid, created=self.created, model=self.model, choices=choices, usage=usage
        )

    def opening(self) -> ChatCompletionResponseStreamChoice:
        return ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(role="assistant", content=""))

    def piece(self, text: str, meta: SingleOutputMeta) -> ChatCompletionResponseStreamChoice | None:
        if meta.tool_calls:
            calls = [ToolCallDelta.model_validate(c) for c in meta.tool_calls]
            return ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(tool_calls=calls))
        return ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(content=text)) if text else None

    def finish(self, finish_reason: str) -> ChatCompletionResponseStreamChoice:
        return ChatCompletionResponseStreamChoice(index=0, delta=DeltaMessage(), finish_reason=finish_reason)


@generation_route(router, ENDPOINT, ChatCompletionResponse, ChatCompletionStreamResponse)
async def chat_completions(body: ChatCompletionRequest, srv: ServerDep) -> ChatCompletionResponse | StreamingResponse:
    llm = srv.llm
    name, config = await prepare(srv, body)
    extra: dict[str, Any] = {}
    rf = _response_format(body)
    if rf is not None:
        extra["response_format"] = rf
    messages = _messages(body.messages)
    if _continues(body, messages):
        config["continue_final_message"] = True
    use_tools = bool(body.tools) and body.tool_choice != "none"
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
    choice = body.tool_choice.model_dump() if isinstance(body.tool_choice, ToolChoiceFunction) else body.tool_choice
    if use_tools and rf is not None:
        raise InvalidRequestError("tools and response_format cannot be combined", param="response_format")
    cid = "chatcmpl-" + uuid.uuid4().hex
    created = now()
    start = time.perf_counter()
    if body.stream:
        if use_tools:
            stream = llm.stream_chat_oai(
                messages, model=name, llm_config=config, delta_mode=True, tools=tools, tool_choice=choice
            )
            items = iterate_in_threadpool(stream)
        else:
            items = llm.async_stream_chat_oai(
                messages, model=name, llm_config=config, delta_mode=True, extra_request_params=extra
            )
        head = await first(items, srv)
        return StreamingResponse(
            sse_stream(srv, _ChatChunks(cid, created, body.model), items, head, start, body.stream_options),
            media_type="text/event-stream",
        )
    if use_tools:
        [r] = await srv.timed(
            llm.async_chat_oai(messages, model=name, llm_config=config, tools=tools, tool_choice=choice)
        )
        meta = r.response.metadata
        counts = {
            "input_tokens_count": r.metadata["input_tokens_count"],
            "generated_tokens_count": r.metadata["generated_tokens_count"],
        }
        if r.metadata["tool_calls"]:
            calls = [
                ToolCallItem(
                    id=c["id"],
                    function=FunctionCall(name=c["name"], arguments=json.dumps(c["arguments"], ensure_ascii=False)),
                )
                for c in r.metadata["tool_calls"]
            ]
            message, finish = ChatMessage(role="assistant", content=None, tool_calls=calls), "tool_calls"
        else:  # no valid call came out: the model's text is the answer
            message, finish = ChatMessage(role="assistant", content=r.response.output), "stop"
    else:
        [r] = await srv.timed(llm.async_chat_oai(messages, model=name, llm_config=config, extra_request_params=extra))
        meta = counts = r.metadata
        message, finish = ChatMessage(role="assistant", content=r.output), meta.get("finish_reason") or "stop"
    srv.metrics.done(ENDPOINT, body.model, time.perf_counter() - start, meta.get("first_token_time"), counts)
    return ChatCompletionResponse(
        id=cid,
        created=created,
        model=body.model,
        choices=[ChatCompletionResponseChoice(index=0, message=message, finish_reason=finish)],
        usage=usage(counts),
    )
