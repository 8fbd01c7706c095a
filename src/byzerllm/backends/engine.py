"""Engine processes: an inference server a worker starts on localhost, waits for, supervises and
stops (DESIGN.md, Engines). One ``EngineProcess`` runs one launcher's command line; the backend
talks to it over its OpenAI-compatible API.

The process is started with the parent-death signal set (Linux ``PR_SET_PDEATHSIG``), so a worker
that is killed takes its engine with it; ``stop()`` ends it with the worker.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from ..errors import BackendError, UpstreamError, WorkerDiedError
from ..types import ChatChunk, ChatRequest, ChatResponse
from .base import Backend, Cancelled, _never

log = logging.getLogger("byzerllm.engine")
ENGINE_DIED = "the engine process of this worker died; it was started again, retry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: stop() still ends it
        pass


class EngineProcess:
    """A server process started from ``command(port)``, ready when ``GET health_path`` answers 200.

    ``start()`` raises ``BackendError`` with the tail of the engine's output when it exits or is not
    ready within ``start_timeout`` seconds. ``ensure()`` starts it again when it has died (once, for
    every caller that notices). ``restarts`` counts the restarts after the first start.
    """

    def __init__(
        self, name: str, command: Callable[[int], list[str]], health_path: str = "/health", start_timeout: float = 300
    ) -> None:
        self.name, self.command, self.health_path, self.start_timeout = name, command, health_path, start_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.restarts = 0
        self._lock = threading.Lock()
        # unnamed: gone with the last process holding it, however the worker ends (undeploy kills it)
        self._log = tempfile.TemporaryFile(prefix=f"byzerllm-{name}-", suffix=".log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        import httpx

        self.port = self.port or free_port()  # a restarted engine keeps its address
        cmd = self.command(self.port)
        log.info("starting %s: %s", self.name, " ".join(cmd))
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendError(
                    f"{self.name} exited with status {self.proc.returncode} while starting: {self.tail()}"
                )
            try:
                if httpx.get(self.base_url + self.health_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet, or loading the model
            time.sleep(0.1)
        output = self.tail()
        self.stop()
        raise BackendError(f"{self.name} was not ready after {self.start_timeout:g}s: {output}")

    def died(self, within: float = 1.0) -> bool:
        """Whether the engine is dead or dies within ``within`` seconds: a killed process closes its
        connections a moment before it can be reaped, so a cut connection is followed by this wait."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            return False
        return True

    def ensure(self) -> bool:
        """Start the engine again if it died; returns whether it did."""
        with self._lock:
            if self.alive():
                return False
            log.warning("%s (pid %s) died; starting it again", self.name, self.proc.pid if self.proc else None)
            self.restarts += 1
            self.start()
            return True

    def tail(self, chars: int = 1500) -> str:
        """The last ``chars`` characters of the engine's output."""
        try:
            fd = self._log.fileno()
            start = max(os.fstat(fd).st_size - chars, 0)
            return os.pread(fd, chars, start).decode("utf-8", errors="replace").strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """End the process (SIGTERM, SIGKILL after 10 s). Its output file stays open for ``tail()``
        and for a later ``start()``, which appends to it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EngineBackend(Backend):
    """Chat on an engine process this worker starts (one subclass per engine: its ``Options``, its
    ``command(port)`` and ``engine_meta()``), through the engine's OpenAI-compatible API.

    A request that finds the engine dead starts it again first; one cut by the engine's death starts
    it again and ends with ``WorkerDiedError`` (the runtime sends a request that had produced nothing
    again, as for a dead worker). Typed output (``response_format`` JSON schema) is constrained by the
    engine; tools go through the client's constrained layer. Subclass options must include
    ``timeout`` and ``start_timeout`` (seconds).
    """

    engine_name: ClassVar[str]
    thread_safe = True  # the engine batches the worker's concurrent requests
    health_path: ClassVar[str] = "/health"

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        from .openai_compat import OpenAICompatBackend

        self.served_tasks: tuple[str, ...] = self.tasks  # ``prepare`` may narrow it for this deployment
        self.prepare(model_path)
        self.engine = EngineProcess(self.engine_name, self.command, self.health_path, self.config["start_timeout"])
        self.engine.start()
        # the client of the engine's API: built here, and by a caller on this node that reads a
        # stream straight from the engine (``local_endpoint``)
        self.api_options: dict[str, Any] = {
            "model": "default",
            "base_url": self.engine.base_url + "/v1",
            "api_key": "none",
            "max_retries": 0,
            "timeout": self.config["timeout"],
            "deadline": self.config["timeout"],
            "native_tools": False,
            "prefix_mode": "vllm",
        }
        self.api = OpenAICompatBackend("", self.api_options)

    def prepare(self, model_path: str) -> None:
        """Check what the engine needs before it starts (the model file, the binary, a GPU...)."""

    def command(self, port: int) -> list[str]:
        """The engine's command line, serving the model as ``default`` on 127.0.0.1:``port``."""
        raise NotImplementedError

    def engine_meta(self) -> dict[str, Any]:
        return {}

    def _cut_by_death(self, exc: UpstreamError) -> bool:
        """Whether a failed request was cut by the engine's death (a connection failure, and the process
        gone or going), not an answer of the engine (a 4xx)."""
        return exc.details.get("status") in (502, 504) and self.engine.died()

    def _engine_died(self) -> WorkerDiedError:
        """Start the dead engine again (its output, which may hold paths, goes to the log only) and
        return the error for the request it cut."""
        try:
            self.engine.ensure()
        except BackendError as exc:
            log.error("%s did not start again: %s", self.engine_name, exc)
        return WorkerDiedError(ENGINE_DIED)

    def _serves(self, task: str) -> None:
        if task not in self.served_tasks:
            raise self._not_served(task)

    @contextmanager
    def _on_engine(self) -> Iterator[None]:
        """A call against the engine, started again first if it died; an ``UpstreamError`` caused by
        its death becomes ``WorkerDiedError``."""
        self.engine.ensure()
        try:
            yield
        except UpstreamError as exc:
            if not self._cut_by_death(exc):
                raise
            raise self._engine_died() from None

    def local_endpoint(self) -> dict[str, Any]:
        """The ``OpenAICompatBackend`` options that reach this engine on 127.0.0.1, for a caller on
        this machine that reads a chat stream from the engine itself instead of through the worker
        (the engine started again first if it died). Raises ``UnsupportedParameterError`` when the
        deployment does not serve chat."""
        self._serves("chat")
        self.engine.ensure()
        return dict(self.api_options)

    def engine_cut(self) -> bool:
        """After a caller's connection to the engine failed: whether the engine died (it is then
        started again), rather than the connection alone."""
        if not self.engine.died():
            return False
        self._engine_died()
        return True

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        self._serves("chat")
        with self._on_engine():
            yield from self.api.stream(request, cancelled)

    def chat(self, request: ChatRequest, cancelled: Cancelled = _never) -> ChatResponse:
        self._serves("chat")
        with self._on_engine():
            return self.api.chat(request, cancelled)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """The engine's ``/v1/embeddings``: one vector per text and the input token count (see
        ``OpenAICompatBackend.embed``), on a deployment that serves ``embed``."""
        self._serves("embed")
        with self._on_engine():
            return self.api.embed(texts)

    def meta(self) -> dict[str, Any]:
        return {
            **self.api.meta(),
            "backend": self.name,
            "engine": self.engine_name,
            "support_response_format": ["json_object", "json_schema"],
            "support_tool_calls": False,
            "engine_restarts": self.engine.restarts,
            **self.engine_meta(),
        }

    def close(self) -> None:
        self.api.close()
        self.engine.stop()
