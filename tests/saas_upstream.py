"""Small upstreams for the SaaS tests: a real uvicorn server in a thread serving an ASGI app,
and an OpenAI-shaped app that fails on purpose (429 with Retry-After, 500, slow answers, a
connection dropped mid-stream, malformed JSON) and counts attempts and concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .conftest import free_port


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Serve ``app`` on a free local port; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def completion(text: str = "ok", model: str = "m", usage: dict | None = None, **message) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text, **message}, "finish_reason": "stop"}
        ],
        "usage": usage or {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def sse(*events: dict | str) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None, **extra) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]
    out = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


class Faults:
    """An OpenAI-shaped chat upstream whose ``mode`` says how to fail:

    ``ok``, ``429`` (with ``Retry-After: retry_after``), ``500``, ``slow`` (answers after ``delay``
    seconds), ``drop_before`` (a stream that dies before its first token), ``drop_after`` (dies
    after one token), ``malformed`` (200 with a body that is not JSON), ``fail_model`` (500 for
    requests naming that model, ok for others). Counts ``attempts``, the ``models`` asked for and
    the highest number of requests in flight at once (``peak``).

    ``/v1/embeddings`` fails in the same modes; ``ok`` answers a 3-dimensional vector per input
    (``[len(text), index, 1]``, in reverse order with their ``index``), ``per_token`` a list of
    vectors per input (as a llama.cpp server on a model without pooling does), ``short`` one vector
    fewer than the inputs."""

    def __init__(self) -> None:
        self.reset("ok")
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )

    def reset(self, mode: str, **settings) -> Faults:
        self.mode = mode
        self.attempts = 0
        self.models: list[str] = []
        self.in_flight = self.peak = 0
        self.delay = settings.get("delay", 0.0)
        self.retry_after = settings.get("retry_after", "0.2")
        self.fail_model = settings.get("fail_model")
        return self

    async def chat(self, request: Request) -> Response:
        self.attempts += 1
        body = await request.json()
        self.last_body = body
        self.models.append(body.get("model"))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._answer(body)
        finally:
            self.in_flight -= 1

    async def embeddings(self, request: Request) -> Response:
        self.attempts += 1
        body = self.last_body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if self.mode in ("ok", "per_token", "short"):
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": [[1.0, 0.0, 0.0]] * 2 if self.mode == "per_token" else [float(len(t)), i, 1],
                }
                for i, t in enumerate(texts)
            ][::-1]
            if self.mode == "short":
                data = data[1:]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model"),
                    "usage": {"prompt_tokens": 2 * len(texts), "total_tokens": 2 * len(texts)},
                }
            )
        return await self._answer(body)

    async def _answer(self, body: dict) -> Response:
        mode = self.mode
        if mode == "fail_model":
            mode = "500" if body.get("model") == self.fail_model else "ok"
        if mode == "429":
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                status_code=429,
                headers={"Retry-After": self.retry_after, "x-request-id": "req-42"},
            )
        if mode == "500":
            return JSONResponse(
                {"error": {"message": "upstream broke", "type": "server_error"}},
                status_code=500,
                headers={"x-request-id": "req-500"},
            )
        if mode == "malformed":
            if body.get("stream"):
                return StreamingResponse(
                    iter([sse(chunk({"role": "assistant"})), "data: {broken\n\n"]), media_type="text/event-stream"
                )
            return Response("{not json", media_type="application/json")
        if mode == "slow" or self.delay:
            await asyncio.sleep(self.delay)
        if mode in ("drop_before", "drop_after"):

            async def dying():
                yield sse(chunk({"role": "assistant", "content": "" if mode == "drop_before" else "Hel"}))
                await asyncio.sleep(0.05)
                raise ConnectionResetError("dropped on purpose")

            return StreamingResponse(dying(), media_type="text/event-stream")
        if body.get("stream"):
            usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            return StreamingResponse(
                iter(
                    [
                        sse(
                            chunk({"role": "assistant", "content": "o"}),
                            chunk({"content": "k"}),
                            chunk({}, "stop"),
                            chunk(usage=usage),
                            "[DONE]",
                        )
                    ]
                ),
                media_type="text/event-stream",
            )
        if body.get("tools"):  # a native tool call of the first tool
            name = body["tools"][0]["function"]["name"]
            arguments = json.dumps({"count": 3, "unit": "month"} if name == "compute_date_range" else {})
            out = completion(
                None,
                tool_calls=[
                    {"id": "call_native_1", "type": "function", "function": {"name": name, "arguments": arguments}}
                ],
            )
            out["choices"][0]["finish_reason"] = "tool_calls"
            return JSONResponse(out)
        return JSONResponse(completion("ok", body.get("model", "m")), headers={"x-request-id": "req-ok"})
