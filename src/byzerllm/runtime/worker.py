"""One replica of a deployment: owns one backend instance and serves its requests.

Runtime-agnostic: the Ray runtime wraps it in an actor, the in-process runtime calls it
directly. Requests of a backend that is not thread-safe are served one at a time; a request
can be cancelled between two generated tokens.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

from ..backends import Backend, create_backend
from ..backends.base import TASK_METHODS
from ..errors import BackendError, ByzerLLMError, InvalidRequestError, RequestCancelledError
from ..types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("byzerllm.worker")


def _failure(backend: str, what: str, exc: Exception) -> BackendError:
    """The error a caller sees for an engine's own exception: its type only (the message of an engine
    error can hold prompt text, paths or a traceback, none of which may reach an error body); the
    whole exception goes to the worker's log."""
    log.error("%s backend failed to %s", backend, what, exc_info=exc)
    return BackendError(f"{backend} backend failed to {what}: {type(exc).__name__} (details in the worker's log)")


class Worker:
    """Build a backend and serve chat requests on it.

    A start-up failure does not raise here: it is kept and raised by ``ready()`` so the pool
    can report it without the runtime restarting a worker that can never start.
    """

    def __init__(
        self, backend: str, model_path: str, options: dict[str, Any], init_error: ByzerLLMError | None = None
    ) -> None:
        """``init_error``: a failure before the backend (its model files could not be had): no
        backend is built and ``ready()`` raises it."""
        self.init_error: ByzerLLMError | None = init_error
        self.backend = None
        try:
            if init_error is None:
                self.backend = create_backend(backend, model_path, options)
        except ByzerLLMError as exc:
            self.init_error = exc
        except Exception as exc:  # engine start-up failures of any kind
            self.init_error = BackendError(f"{backend} backend failed to load {model_path}: {exc!r}")
        serialise = self.backend is not None and not self.backend.thread_safe
        self._lock = threading.Lock() if serialise else nullcontext()
        self._cancelled: set[str] = set()
        self._active: set[str] = set()

    def ready(self) -> dict[str, Any]:
        """``{"pid", "node", "meta"}`` once the backend is loaded (``node``: the machine this worker
        runs on, ``node_name()``); raises the start-up error otherwise."""
        if self.init_error is not None:
            raise self.init_error
        return {"pid": os.getpid(), "node": self.node_name(), "meta": self.backend.get_meta()}

    def node_name(self) -> str:
        """The machine this worker runs on, as ``ready()`` reports it: the host name here; the Ray
        worker gives the node's IP address, as Ray names its nodes."""
        return socket.gethostname()

    def meta(self) -> dict[str, Any]:
        return self.ready()["meta"]

    def cancel(self, request_id: str) -> None:
        """Ask the generation of ``request_id`` to stop at its next token (no-op once it ended)."""
        if request_id in self._active:
            self._cancelled.add(request_id)

    def _check(self, request: ChatRequest) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.backend.check_request(request)

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Serve one request to completion."""
        self._check(request)
        self._active.add(request.request_id)
        try:
            with self._lock:
                return self.backend.chat(request, lambda: request.request_id in self._cancelled)
        except ByzerLLMError:
            raise
        except Exception as exc:
            raise _failure(self.backend.name, "chat", exc) from None
        finally:
            self._active.discard(request.request_id)
            self._cancelled.discard(request.request_id)

    def stream(self, request: ChatRequest) -> Iterator[ChatChunk]:
        """Serve one request, yielding chunks as the backend generates them."""
        self._check(request)
        rid = request.request_id
        self._active.add(rid)
        try:
            with self._lock:
                yield from self.backend.stream(request, lambda: rid in self._cancelled)
                if rid in self._cancelled:
                    raise RequestCancelledError(f"request {rid} was cancelled")
        except ByzerLLMError:
            raise
        except Exception as exc:
            raise _failure(self.backend.name, "stream", exc) from None
        finally:
            self._active.discard(rid)
            self._cancelled.discard(rid)

    def local_endpoint(self, request: ChatRequest) -> dict[str, Any] | None:
        """For a stream of ``request`` a caller on this machine reads from the backend's engine
        itself: the engine's client options (``EngineBackend.local_endpoint``), after the checks
        ``stream`` makes; ``None`` for a backend without an engine process."""
        self._check(request)
        endpoint = getattr(self.backend, "local_endpoint", None)
        return None if endpoint is None else endpoint()

    def engine_cut(self) -> bool:
        """Whether the backend's engine process died (and was started again) after a caller's
        connection to it failed; False for a backend without one."""
        cut = getattr(self.backend, "engine_cut", None)
        return cut is not None and cut()

    def embed(self, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        """Embedding vectors of ``texts`` (search queries when ``query``) and their input token count."""
        return self._unary("embed", lambda b: (b.embed_query if query else b.embed)(texts))

    def rerank(self, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        """One relevance score per ``(query, passage)`` pair and the input token count."""
        return self._unary("rerank", lambda b: b.rerank(pairs))

    def run(self, task: str, request: Any) -> Any:
        """Serve one request of a unary task (``TASK_METHODS``: "speech", "transcription", "image")
        with its typed request; returns the typed result."""
        method = TASK_METHODS.get(task)
        if method is None:
            raise InvalidRequestError(f"unknown task {task!r}; accepted: {', '.join(TASK_METHODS)}", param="task")
        return self._unary(task, lambda b: getattr(b, method)(request))

    def _unary(self, what: str, call: Callable[[Backend], Any]) -> Any:
        if self.init_error is not None:
            raise self.init_error
        try:
            with self._lock:
                return call(self.backend)
        except ByzerLLMError:
            raise
        except Exception as exc:
            raise _failure(self.backend.name, what, exc) from None

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
