"""``saas/claude`` against a local server speaking Anthropic's Messages API as documented
(https://docs.anthropic.com/en/api/messages and .../messages-streaming): the request's shape is
asserted, answers come in Anthropic's JSON and SSE event formats."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from byzerllm.backends.claude import ClaudeBackend, to_anthropic_messages
from byzerllm.errors import InvalidRequestError, UpstreamError
from byzerllm.types import ChatRequest

from ..saas_upstream import serve


def event(kind: str, **data) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


class Messages:
    def __init__(self) -> None:
        self.seen: list[tuple[dict, dict]] = []
        self.overloaded = 0
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request):
        body = await request.json()
        self.seen.append((body, dict(request.headers)))
        if self.overloaded:
            self.overloaded -= 1
            return JSONResponse(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                status_code=529,
                headers={"request-id": "req_529", "retry-after": "0.1"},
            )
        usage = {"input_tokens": 11, "output_tokens": 5}
        if body.get("stream"):
            message = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 1},
            }
            events = [
                event("message_start", message=message),
                event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
                event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm."}),
                event("content_block_stop", index=0),
                event("content_block_start", index=1, content_block={"type": "text", "text": ""}),
                event("ping"),
                event("content_block_delta", index=1, delta={"type": "text_delta", "text": "Hi"}),
                event("content_block_delta", index=1, delta={"type": "text_delta", "text": " there"}),
                event("content_block_stop", index=1),
                event(
                    "message_delta",
                    delta={"stop_reason": "end_turn", "stop_sequence": None},
                    usage={"output_tokens": 5},
                ),
                event("message_stop"),
            ]
            return StreamingResponse(iter(events), media_type="text/event-stream", headers={"request-id": "req_s"})
        if body.get("tools"):
            content = [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": body["tools"][0]["name"], "input": {"city": "Paris"}},
            ]
            stop = "tool_use"
        else:
            content, stop = [{"type": "text", "text": "Hi there"}], "end_turn"
        return JSONResponse(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            },
            headers={"request-id": "req_1"},
        )


@pytest.fixture(scope="module")
def upstream():
    state = Messages()
    with serve(state.app) as url:
        state.url = url
        yield state


def backend(upstream, **options) -> ClaudeBackend:
    return ClaudeBackend(
        "",
        {
            "preset": "claude",
            "model": "claude-opus-4-5",
            "base_url": upstream.url,
            "api_key": "sk-ant-1234",
            "backoff": 0.01,
            **options,
        },
    )


def test_chat_request_shape_and_answer(upstream):
    upstream.seen.clear()
    resp = backend(upstream).chat(
        ChatRequest(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            temperature=0.2,
            stop=["\n\n"],
        )
    )
    body, headers = upstream.seen[-1]
    # the key as x-api-key (the API reference) or a bearer token (what this SDK version sends)
    assert "sk-ant-1234" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert headers["anthropic-version"]
    assert body["model"] == "claude-opus-4-5" and body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["max_tokens"] == 4096
    assert body["temperature"] == 0.2 and body["stop_sequences"] == ["\n\n"]
    assert resp.text == "Hi there" and resp.finish_reason == "stop"
    assert (resp.input_tokens, resp.generated_tokens) == (11, 5)
    assert resp.details == {
        "model": "claude-opus-4-5",
        "attempts": 1,
        "request_id": "req_1",
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


def test_stream_events_thinking_and_usage(upstream):
    chunks = list(backend(upstream, max_output_tokens=100).stream(ChatRequest([{"role": "user", "content": "hi"}])))
    assert upstream.seen[-1][0]["stream"] is True and upstream.seen[-1][0]["max_tokens"] == 100
    assert "".join(c.delta for c in chunks) == "Hi there" and "".join(c.reasoning for c in chunks) == "Hmm."
    last = chunks[-1]
    assert last.finish_reason == "stop" and (last.input_tokens, last.generated_tokens) == (11, 5)
    assert last.details["request_id"] == "req_s"


def test_tool_use_both_ways(upstream):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    history = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_0", "content": "sunny"},
    ]
    resp = backend(upstream).chat(ChatRequest(history, tools=tools, tool_choice="required"))
    body = upstream.seen[-1][0]
    assert body["tools"] == [
        {"name": "weather", "description": "Weather of a city", "input_schema": tools[0]["function"]["parameters"]}
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_0", "name": "weather", "input": {"city": "Rome"}}],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "sunny"}],
    }
    assert resp.finish_reason == "tool_calls" and resp.text == "Checking."
    assert resp.tool_calls == [
        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    ]


def test_overloaded_is_retried_and_reported_with_anthropics_words(upstream):
    upstream.overloaded, upstream.seen[:] = 1, []
    assert backend(upstream).chat(ChatRequest([{"role": "user", "content": "hi"}])).details["attempts"] == 2
    upstream.overloaded = 3
    with pytest.raises(UpstreamError, match="answered 529: Overloaded") as err:
        backend(upstream, max_retries=2).chat(ChatRequest([{"role": "user", "content": "hi"}]))
    assert err.value.request_id == "req_529" and err.value.attempts == 3 and upstream.overloaded == 0


def test_what_claude_cannot_take_is_named(upstream):
    with pytest.raises(InvalidRequestError) as err:
        backend(upstream).chat(
            ChatRequest([{"role": "user", "content": "hi"}], response_format={"type": "json_object"})
        )
    assert err.value.param == "response_format"
    with pytest.raises(InvalidRequestError, match="saas.model"):
        ClaudeBackend("", {"base_url": upstream.url})


def test_image_parts_and_several_system_messages():
    system, messages = to_anthropic_messages(
        [
            {"role": "system", "content": "A."},
            {"role": "system", "content": "B."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ]
    )
    assert system == "A.\n\nB."
    assert messages[0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
