"""The OpenAI-compatible HTTP server: every deployment on the cluster is one of its models.

It knows only the client API (``ByzerLLM``): a request's ``model`` names a deployment (or an
alias given with ``--served_model_name alias=deployment``). Errors use OpenAI's body
``{"error": {"message", "type", "param", "code"}}`` with the status of the ``byzerllm.errors``
class. Response shapes follow the OpenAI API reference; ``/v1/rerank`` follows Jina's.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ByzerLLMError, InvalidRequestError, RequestTimeoutError
from .metrics import Metrics
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Message, RerankRequest

MAX_BODY_BYTES = 8 * 1024 * 1024


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


# pydantic's names of union members in an error's location (``str``, ``list[str]``, a model class)
_UNION_MEMBER = re.compile(r"^([a-z-]+\[.*\]|str|int|float|bool|none|[A-Z]\w*)$")


def body_param(loc: Any) -> str | None:
    """OpenAI's ``param`` for a location in the request body: fields joined by dots, list indexes
    as ``[i]`` (OpenAI writes ``messages.[1].content``), without pydantic's union member names."""
    parts = [f"[{x}]" if isinstance(x, int) else str(x) for x in loc if x != "body"]
    parts = [p for p in parts if p.startswith("[") or not _UNION_MEMBER.match(p)]
    return ".".join(parts) or None


def request_param(param: str | None, path: str) -> str | None:
    """OpenAI's ``param`` for a client error's field (``conversations[0].content``, ``max_length``):
    the request's own field at ``path``, written as ``body_param`` writes it."""
    if not param:
        return param
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        param = re.sub(r"^conversations\[0\]\.content.*", "prompt", param)
    param = re.sub(r"^conversations\b", "messages", param)
    param = re.sub(r"^(max_length|max_new_tokens)$", "max_tokens", param)
    param = re.sub(r"^instruction$", "input", param)
    return re.sub(r"\.?\[(\d+)\]", r".[\1]", param)


def _now() -> int:
    return int(time.time())


def _usage(meta: dict[str, Any]) -> dict[str, int]:
    prompt, completion = meta.get("input_tokens_count", 0), meta.get("generated_tokens_count", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class Server:
    """State of one server: the client, keys, aliases, metrics."""

    def __init__(
        self,
        llm: Any,
        api_keys: Iterable[str] = (),
        aliases: dict[str, str] | None = None,
        request_timeout: float = 600.0,
    ) -> None:
        self.llm = llm
        self.api_keys = [k.encode() for k in api_keys if k]
        self.aliases = dict(aliases or {})
        self.request_timeout = request_timeout
        self.metrics = Metrics()

    def authorized(self, header: str | None) -> bool:
        if not self.api_keys:
            return True
        scheme, _, token = (header or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # compare against every key so the time does not depend on which one matched
        return sum(hmac.compare_digest(given, key) for key in self.api_keys) > 0

    def deployment(self, model: str) -> str:
        """The deployment a request's model names (an unknown one is reported by the client with
        the list of deployed names)."""
        return self.aliases.get(model, model)

    async def check_max_tokens(self, name: str, body: Any) -> None:
        """Refuse ``max_tokens`` above the deployment's context length (OpenAI answers 400 too)."""
        asked = getattr(body, "max_completion_tokens", None) or body.max_tokens
        if not asked:
            return
        context = (await asyncio.to_thread(self.llm.get_meta, name)).get("max_model_len")
        if context and asked > context:
            field = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) else "max_tokens"
            raise InvalidRequestError(
                f"{field} is too large: {asked}. The model {body.model!r} has a context of {context} tokens",
                param=field,
            )

    async def timed(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError(f"the model did not answer within {self.request_timeout:g}s") from None


def _sampling(body: Any) -> dict[str, Any]:
    """The client's ``llm_config`` for an OpenAI request."""
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


class Guard:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on every request): the
    API key check (401) and the request size limit (413): by Content-Length before reading, and
    while reading a body sent without one (chunked), which stops at the limit."""

    OPEN_PATHS = ("/health", "/docs", "/openapi.json")

    def __init__(self, app, server: Server, max_body_bytes: int) -> None:
        self.app, self.server, self.max_body_bytes = app, server, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            response = JSONResponse(
                error_body(
                    f"request body is larger than {self.max_body_bytes} bytes",
                    "invalid_request_error",
                    code="request_too_large",
                ),
                status_code=413,
            )
            return await response(scope, receive, send)
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if scope["path"] not in self.OPEN_PATHS and not self.server.authorized(auth):
            response = JSONResponse(
                error_body(
                    "invalid or missing API key (Authorization: Bearer <key>)",
                    "authentication_error",
                    code="invalid_api_key",
                ),
                status_code=401,
            )
            return await response(scope, receive, send)
        if length.isdigit():
            return await self.app(scope, receive, send)
        read = 0

        async def limited_receive():
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_body_bytes:  # the app's error handler answers 413
                raise StarletteHTTPException(413, f"request body is larger than {self.max_body_bytes} bytes")
            return message

        return await self.app(scope, limited_receive, send)


def create_app(
    llm: Any = None,
    api_keys: Iterable[str] = (),
    aliases: dict[str, str] | None = None,
    request_timeout: float = 600.0,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app. ``llm`` is a connected ``ByzerLLM`` (one is made when None)."""
    if llm is None:
        from ..client import ByzerLLM

        llm = ByzerLLM()
    srv = Server(llm, api_keys, aliases, request_timeout)
    app = FastAPI(title="byzerllm", version="1", description="OpenAI-compatible API over byzerllm deployments.")
    app.state.server = srv

    app.add_middleware(Guard, server=srv, max_body_bytes=max_body_bytes)

    @app.exception_handler(ByzerLLMError)
    async def byzer_error(request: Request, exc: ByzerLLMError):
        srv.metrics.error(request.url.path, getattr(exc, "status_code", 500))
        param = request_param(getattr(exc, "param", None), request.url.path)
        return JSONResponse(error_body(str(exc), exc.error_type, param), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = None if first.get("type") == "json_invalid" else body_param(first.get("loc", ()))
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        srv.metrics.error(request.url.path, 400)
        return JSONResponse(
            error_body(f"{param or 'body'}: {message}", "invalid_request_error", param), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        srv.metrics.error(request.url.path, 500)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        body, content_type = srv.metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = await asyncio.to_thread(llm.list_deployments)
        data = []
        for name in names:
            try:
                info = await asyncio.to_thread(llm.deployment_info, name)
            except ByzerLLMError:
                continue  # removed meanwhile
            meta = info.get("meta") or {}
            kind = meta.get("model_type", "chat")
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": int(info["spec"]["created_at"]),
                    "owned_by": "byzerllm",
                    "kind": kind,
                    "state": info["state"],
                }
            )
        for alias, name in srv.aliases.items():
            data += [{**d, "id": alias} for d in data if d["id"] == name]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest):
        name = srv.deployment(body.model)
        await srv.check_max_tokens(name, body)
        config, extra = _sampling(body), {}
        rf = _response_format(body)
        if rf is not None:
            extra["response_format"] = rf
        messages = _messages(body.messages)
        if _continues(body, messages):
            config["continue_final_message"] = True
        use_tools = bool(body.tools) and body.tool_choice != "none"
        tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
        choice = body.tool_choice.model_dump() if hasattr(body.tool_choice, "model_dump") else body.tool_choice
        if use_tools and rf is not None:
            raise InvalidRequestError("tools and response_format cannot be combined", param="response_format")
        cid = "chatcmpl-" + uuid.uuid4().hex
        created = _now()
        start = time.perf_counter()
        if body.stream:
            if use_tools:
                items = iterate_in_threadpool(
                    llm.stream_chat_oai(
                        messages, model=name, llm_config=config, delta_mode=True, tools=tools, tool_choice=choice
                    )
                )
            else:
                items = llm.async_stream_chat_oai(
                    messages, model=name, llm_config=config, delta_mode=True, extra_request_params=extra
                )
            first = await _first(items, srv)
            return StreamingResponse(
                _chat_stream(srv, items, first, cid, created, body.model, start, body.stream_options),
                media_type="text/event-stream",
            )
        if use_tools:
            [r] = await srv.timed(
                llm.async_chat_oai(messages, model=name, llm_config=config, tools=tools, tool_choice=choice)
            )
            meta = r.response.metadata
            usage = {
                "input_tokens_count": r.metadata["input_tokens_count"],
                "generated_tokens_count": r.metadata["generated_tokens_count"],
            }
            if r.metadata["tool_calls"]:
                calls = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)},
                    }
                    for c in r.metadata["tool_calls"]
                ]
                message, finish = {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
            else:  # no valid call came out: the model's text is the answer
                message, finish = {"role": "assistant", "content": r.response.output}, "stop"
        else:
            [r] = await srv.timed(
                llm.async_chat_oai(messages, model=name, llm_config=config, extra_request_params=extra)
            )
            meta = usage = r.metadata
            message, finish = {"role": "assistant", "content": r.output}, meta.get("finish_reason") or "stop"
        srv.metrics.done(
            "/v1/chat/completions", body.model, time.perf_counter() - start, meta.get("first_token_time"), usage
        )
        # a response object skips FastAPI's re-encoding of a returned dict
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": _usage(usage),
            }
        )

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        name = srv.deployment(body.model)
        await srv.check_max_tokens(name, body)
        config, extra = _sampling(body), {}
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise InvalidRequestError("prompt must be one string (or a list of one)", param="prompt")
        if body.suffix or (body.best_of or 1) > 1:
            raise InvalidRequestError(
                "suffix and best_of are not supported", param="suffix" if body.suffix else "best_of"
            )
        cid, created, start = "cmpl-" + uuid.uuid4().hex, _now(), time.perf_counter()
        if body.stream:
            items = llm.async_stream_completion(prompts[0], model=name, llm_config=config, extra_request_params=extra)
            first = await _first(items, srv)
            return StreamingResponse(
                _completion_stream(srv, items, first, cid, created, body.model, start, body.stream_options),
                media_type="text/event-stream",
            )
        r = await srv.timed(llm.async_completion(prompts[0], model=name, llm_config=config, extra_request_params=extra))
        srv.metrics.done(
            "/v1/completions", body.model, time.perf_counter() - start, r.metadata.get("first_token_time"), r.metadata
        )
        text = (prompts[0] if body.echo else "") + r.output
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "text": text, "finish_reason": r.metadata["finish_reason"], "logprobs": None}],
            "usage": _usage(r.metadata),
        }

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        name = srv.deployment(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError(
                "input must be a string or a non-empty list of strings (token arrays are not supported)", param="input"
            )
        start = time.perf_counter()
        out = await srv.timed(llm.async_emb(name, texts))
        dim = len(out[0].output)
        if body.dimensions is not None and body.dimensions != dim:
            raise InvalidRequestError(f"dimensions must be {dim} for {body.model}", param="dimensions")
        tokens = out[0].metadata["input_tokens_count"]
        srv.metrics.done(
            "/v1/embeddings", body.model, time.perf_counter() - start, None, {"input_tokens_count": tokens}
        )
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": r.output
                if body.encoding_format == "float"
                else base64.b64encode(struct.pack(f"<{dim}f", *r.output)).decode(),
            }
            for i, r in enumerate(out)
        ]
        return {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/v1/rerank")
    async def rerank(body: RerankRequest):
        name = srv.deployment(body.model)
        docs = [d if isinstance(d, str) else d.text for d in body.documents]
        start = time.perf_counter()
        # the deployment's own reranker: a cross-encoder, an LLM judge, or embedding similarity
        out = (await srv.timed(llm.async_emb_rerank(name, [[body.query, d] for d in docs])))[0]
        score_of = {doc: score for (_, doc), score in out.output}  # equal documents have equal scores
        scores = [score_of[d] for d in docs]
        order = sorted(range(len(docs)), key=lambda i: scores[i], reverse=True)[: body.top_n or len(docs)]
        tokens = out.metadata["input_tokens_count"]
        srv.metrics.done("/v1/rerank", body.model, time.perf_counter() - start, None, {"input_tokens_count": tokens})
        results = [
            {
                "index": i,
                "relevance_score": scores[i],
                **({"document": {"text": docs[i]}} if body.return_documents else {}),
            }
            for i in order
        ]
        return {"model": body.model, "results": results, "usage": {"total_tokens": tokens}}

    return app


async def _first(items: AsyncIterator, srv: Server):
    """The first item of a stream, awaited before the response starts, so that errors such as an
    unknown parameter still get their HTTP status instead of a broken stream."""
    try:
        return await srv.timed(items.__anext__())
    except StopAsyncIteration:
        return None


async def _relay(items: AsyncIterator, first) -> AsyncIterator:
    """``first`` then the rest of ``items``; closes ``items`` when the caller stops (a client that
    disconnects cancels the generation on the worker)."""
    try:
        if first is None:
            return
        yield first
        async for item in items:
            yield item
    finally:
        await items.aclose()


async def _sse_stream(
    srv: Server,
    endpoint: str,
    items: AsyncIterator,
    first,
    base: dict[str, Any],
    start: float,
    options,
    head: dict | None,
    piece,
    last,
) -> AsyncIterator[str]:
    """SSE events: ``head`` (if any), ``piece(text, meta)`` per item (None skips it), the final
    chunk ``last(finish_reason)`` with usage, the usage-only chunk when asked, ``[DONE]``."""
    if head is not None:
        yield _sse({**base, "choices": [head]})
    meta, ttft = None, None
    try:
        async for text, meta in _relay(items, first):
            choice = piece(text, meta)
            if choice is not None:
                ttft = ttft or time.perf_counter() - start
                yield _sse({**base, "choices": [choice]})
    except ByzerLLMError as exc:  # after the headers: the error travels in the stream
        srv.metrics.error(endpoint, exc.status_code)
        yield _sse(error_body(str(exc), exc.error_type, getattr(exc, "param", None)))
        yield "data: [DONE]\n\n"
        return
    stats = meta.to_dict() if meta else {}
    usage = _usage(stats)
    yield _sse({**base, "choices": [last((meta.finish_reason if meta else None) or "stop")], "usage": usage})
    if options is not None and options.include_usage:
        yield _sse({**base, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"
    srv.metrics.done(endpoint, base["model"], time.perf_counter() - start, ttft, stats)


def _chat_stream(
    srv: Server, items: AsyncIterator, first, cid: str, created: int, model: str, start: float, options
) -> AsyncIterator[str]:
    def piece(text: str, meta) -> dict | None:
        if meta.tool_calls:
            return {"index": 0, "delta": {"tool_calls": meta.tool_calls}, "finish_reason": None}
        return {"index": 0, "delta": {"content": text}, "finish_reason": None} if text else None

    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    head = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    return _sse_stream(
        srv,
        "/v1/chat/completions",
        items,
        first,
        base,
        start,
        options,
        head,
        piece,
        lambda finish: {"index": 0, "delta": {}, "finish_reason": finish},
    )


def _completion_stream(
    srv: Server, items: AsyncIterator, first, cid: str, created: int, model: str, start: float, options
) -> AsyncIterator[str]:
    def piece(text: str, meta) -> dict | None:
        return {"index": 0, "text": text, "finish_reason": None, "logprobs": None} if text else None

    base = {"id": cid, "object": "text_completion", "created": created, "model": model}
    return _sse_stream(
        srv,
        "/v1/completions",
        items,
        first,
        base,
        start,
        options,
        None,
        piece,
        lambda finish: {"index": 0, "text": "", "finish_reason": finish, "logprobs": None},
    )
