"""An OpenAI-compatible upstream for the compatibility tests: records every request body and answers
with what the test set (text, a reasoning model's ``reasoning_content``, or a 400 for
``response_format: json_schema`` as DeepSeek's API does)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..saas_upstream import chunk, completion, sse

# DeepSeek's answer to response_format json_schema (reported in litellm#7580 and khoj#1336)
SCHEMA_REFUSAL = {
    "error": {
        "message": "This response_format type is unavailable now",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
}


class Recorder:
    """``bodies``: every JSON body received, in order. ``text`` / ``reasoning``: the answer.
    ``refuse_json_schema``: answer 400 to a body asking for ``json_schema``."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.text = '{"value": true}'
        self.reasoning = ""
        self.refuse_json_schema = False
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        if self.refuse_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            return JSONResponse(SCHEMA_REFUSAL, status_code=400)
        extra = {"reasoning_content": self.reasoning} if self.reasoning else {}
        if not body.get("stream"):
            return JSONResponse(completion(self.text, **extra))
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        events = [chunk({"role": "assistant", "content": "", **extra})] if extra else []
        events += [
            chunk({"content": self.text[:2]}),
            chunk({"content": self.text[2:]}),
            chunk({}, "stop"),
            chunk(usage=usage),
            "[DONE]",
        ]
        return StreamingResponse(iter([sse(*events)]), media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
            }
        )
