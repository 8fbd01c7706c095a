"""A fast OpenAI-compatible upstream with a fixed answer, for measuring what a proxy adds.

    python bench/_upstream.py --port 9100

``POST /v1/chat/completions`` answers at once with the same completion (streamed as a few SSE
chunks when asked); ``GET /v1/models`` lists one model. No model, no waiting: all measured time
above this server's own is the proxy's.
"""

from __future__ import annotations

import argparse
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ANSWER = "The capital of France is Paris."
USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}


async def chat(request: Request):
    body = await request.json()
    model = body.get("model", "fixed")
    if body.get("stream"):

        async def events():
            base = {"id": "chatcmpl-fixed", "object": "chat.completion.chunk", "created": 0, "model": model}
            for word in ANSWER.split(" "):
                yield (
                    "data: "
                    + json.dumps(
                        {**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
                    )
                    + "\n\n"
                )
            yield (
                "data: "
                + json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                + "\n\n"
            )
            yield "data: " + json.dumps({**base, "choices": [], "usage": USAGE}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse(
        {
            "id": "chatcmpl-fixed",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": USAGE,
        }
    )


async def models(request: Request):
    return JSONResponse({"object": "list", "data": [{"id": "fixed", "object": "model", "owned_by": "bench"}]})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])

if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
