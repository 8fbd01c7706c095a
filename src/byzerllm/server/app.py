"""The OpenAI-compatible HTTP server: every deployment on the cluster is one of its models.

It knows only the client API (``ChatClient``): a request's ``model`` names a deployment (or an
alias given with ``--served_model_name alias=deployment``). Errors use OpenAI's body
``{"error": {"message", "type", "param", "code"}}`` with the status of the ``byzerllm.errors``
class. Response shapes follow the OpenAI API reference; ``/v1/rerank`` follows Jina's.

This module builds the app: the ASGI guard (API keys, body size), the error handlers, the routers
of ``routes``, the OpenAPI schema, and the lifespan that runs the history sampler (``history``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ByzerLLMError
from .chat_client import ChatClient
from .errors import body_param, error_response, request_param
from .history import INTERVAL
from .responses import (
    ChatCompletionStreamResponse,
    CompletionStreamResponse,
    TranscriptionResponse,
    VerboseTranscriptionResponse,
)
from .routes import ROUTERS
from .state import Server

MAX_BODY_BYTES = 8 * 1024 * 1024
# an audio upload to /v1/audio/transcriptions may be as large as OpenAI takes (its API reference)
MAX_AUDIO_BYTES = 25 * 1024 * 1024

# the models of the streams' events, and of the transcription routes' JSON answers (named in a
# content that may also be text/plain)
STREAM_CHUNKS = (ChatCompletionStreamResponse, CompletionStreamResponse)
LISTED_MODELS = (*STREAM_CHUNKS, TranscriptionResponse, VerboseTranscriptionResponse)


class Guard:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on every request): the
    API key check (401) and the request size limit (413): by Content-Length before reading, and
    while reading a body sent without one (chunked), which stops at the limit. ``OPEN_PATHS`` and
    everything under ``OPEN_TREES`` (the console's page and its files, which hold no cluster data)
    need no key."""

    OPEN_PATHS = ("/health", "/docs", "/openapi.json")
    OPEN_TREES = ("/console",)

    def __init__(self, app, server: Server, max_body_bytes: int) -> None:
        self.app, self.server, self.max_body_bytes = app, server, max_body_bytes

    def limit(self, path: str) -> int:
        """The body limit of ``path``: audio uploads may reach OpenAI's 25 MB, others ``max_body_bytes``."""
        return max(self.max_body_bytes, MAX_AUDIO_BYTES) if path.startswith("/v1/audio/") else self.max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        limit = self.limit(scope["path"])
        if length.isdigit() and int(length) > limit:
            response = error_response(
                413,
                f"request body is larger than {limit} bytes",
                "invalid_request_error",
                code="request_too_large",
            )
            return await response(scope, receive, send)
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if not self.is_open(scope["path"]) and not self.server.authorized(auth):
            response = error_response(
                401,
                "invalid or missing API key (Authorization: Bearer <key>)",
                "authentication_error",
                code="invalid_api_key",
            )
            return await response(scope, receive, send)
        if length.isdigit():
            return await self.app(scope, receive, send)
        read = 0

        async def limited_receive():
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > limit:  # the app's error handler answers 413
                raise StarletteHTTPException(413, f"request body is larger than {limit} bytes")
            return message

        return await self.app(scope, limited_receive, send)

    @classmethod
    def is_open(cls, path: str) -> bool:
        """Whether ``path`` is served without an API key."""
        return path in cls.OPEN_PATHS or any(path == t or path.startswith(t + "/") for t in cls.OPEN_TREES)


def _add_error_handlers(app: FastAPI, srv: Server) -> None:
    """Every error as OpenAI's body: ``byzerllm.errors`` with their status, validation errors as
    400 naming the field, Starlette's (404, 405, 413 while reading) as they are, anything else as
    a 500 that names only the exception's type (no message: it may hold the prompt or a path)."""

    @app.exception_handler(ByzerLLMError)
    async def byzer_error(request: Request, exc: ByzerLLMError) -> JSONResponse:
        srv.metrics.error(request.url.path, getattr(exc, "status_code", 500))
        param = request_param(getattr(exc, "param", None), request.url.path)
        return error_response(exc.status_code, str(exc), exc.error_type, param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = None if first.get("type") == "json_invalid" else body_param(first.get("loc", ()))
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        srv.metrics.error(request.url.path, 400)
        return error_response(400, f"{param or 'body'}: {message}", "invalid_request_error", param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        srv.metrics.error(request.url.path, 500)
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")


class ServerApp(FastAPI):
    """FastAPI whose OpenAPI schema also holds the stream chunk models (``STREAM_CHUNKS``) and the
    transcription answers (``LISTED_MODELS``): a route names them only inside a content of its own
    (``text/event-stream``, or JSON beside ``text/plain``), where FastAPI does not collect them."""

    def openapi(self) -> dict[str, Any]:
        made = self.openapi_schema is None
        schema = super().openapi()  # made once, then kept in self.openapi_schema
        if made:
            _, chunks = models_json_schema(
                [(model, "serialization") for model in LISTED_MODELS], ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in chunks["$defs"].items():
                components.setdefault(name, definition)
        return schema


def create_app(
    llm: ChatClient | None = None,
    api_keys: Iterable[str] = (),
    aliases: dict[str, str] | None = None,
    request_timeout: float = 600.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    history_interval: float = INTERVAL,
    storage_dir: str | None = None,
    documents_root: str | None = None,
) -> FastAPI:
    """The FastAPI app in front of ``llm``, a connected ``ByzerLLM`` (one is made when None) or
    any other ``ChatClient``. ``api_keys``: the accepted bearer tokens (none: the server is
    open); ``aliases``: ``{served name: deployment}``; ``request_timeout``: seconds before a 504;
    ``max_body_bytes``: the largest request body (413 above it; audio uploads may reach 25 MB);
    ``history_interval``: seconds between two samples of the deployments' counters
    (``/v1/deployments/{name}/history``); ``storage_dir``: the store ``/v1/storage`` and ``/v1/rag``
    read (None: ``ByzerStorage``'s default); ``documents_root``: the folder ``/v1/rag`` builds may read
    (None: the working directory)."""
    if llm is None:
        from ..client import ByzerLLM

        llm = ByzerLLM()
    srv = Server(
        llm,
        api_keys,
        aliases,
        request_timeout,
        history_interval=history_interval,
        storage_dir=storage_dir,
        documents_root=documents_root,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the history sampler runs while the app does (uvicorn's, or a TestClient's, lifespan)
        sampler = asyncio.create_task(srv.history.run(), name="byzerllm-history")
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    app = ServerApp(
        title="byzerllm",
        version="1",
        description="OpenAI-compatible API over byzerllm deployments.",
        lifespan=lifespan,
    )
    app.state.server = srv
    app.add_middleware(Guard, server=srv, max_body_bytes=max_body_bytes)
    _add_error_handlers(app, srv)
    for router in ROUTERS:
        app.include_router(router)
    return app
