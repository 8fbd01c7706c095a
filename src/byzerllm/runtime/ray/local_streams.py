"""Chat streams a caller reads straight from the engine process of a worker on its own node.

Relaying an engine's tokens through the worker actor and Ray costs CPU on every token (about
0.4 ms in the worker and part of the caller's 0.45 ms, measured by bench/serving_throughput.py with
16 streams), CPU the engine's threads then lack on a small machine. A caller on the worker's node
takes a slot from the worker (``RayWorker.open_local``), reads the stream from the engine's
OpenAI-compatible API on 127.0.0.1 with the same client code the worker uses, and gives the slot
back with the stream's token counts (``close_local``). Supervision stays with the worker: a cut
connection is reported to it, which tells whether the engine died and starts it again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...backends.openai_compat import OpenAICompatBackend
from ...errors import BackendError, ByzerLLMError
from ...types import ChatChunk, ChatRequest
from .routing import END

log = logging.getLogger("byzerllm.runtime")


class LocalStream:
    """One request's chunks from an engine. ``next_batch()`` for a blocking caller (one chunk a call),
    ``anext_batch()`` for asyncio (the chunks that arrived together, read by a thread of
    ``readers``); both return the plans' ``END`` after the last chunk. ``abort()`` stops the generation at its
    next chunk (the last chunk's finish_reason is then ``cancelled``); ``close()`` stops reading."""

    def __init__(self, api: OpenAICompatBackend, request: ChatRequest, readers: ThreadPoolExecutor, done: Any) -> None:
        self.request_id = request.request_id
        self.aborted = False
        self.closed = False
        self.last: ChatChunk | None = None
        self._done = done
        self._readers = readers
        self._chunks = self._generate(api, request)
        self._queue: asyncio.Queue | None = None

    def _generate(self, api: OpenAICompatBackend, request: ChatRequest) -> Iterator[ChatChunk]:
        try:
            for chunk in api.stream(request, lambda: self.aborted or self.closed):
                self.last = chunk
                yield chunk
        except ByzerLLMError:
            raise
        except Exception as exc:  # its text may hold the prompt: the type reaches the caller, the rest the log
            log.error("reading a stream from an engine failed", exc_info=exc)
            raise BackendError(
                f"reading the engine's stream failed: {type(exc).__name__} (details in this process's log)"
            ) from None

    def abort(self) -> None:
        self.aborted = True

    def next_batch(self) -> list[ChatChunk] | Any:
        try:
            return [next(self._chunks)]
        except StopIteration:
            return END

    async def anext_batch(self) -> list[ChatChunk] | Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._readers.submit(self._read, asyncio.get_running_loop(), self._queue)
        item, exc = await self._queue.get()
        batch: list[ChatChunk] = []
        while item is not END:
            batch.append(item)
            if self._queue.empty():
                break
            item, exc = self._queue.get_nowait()
        if batch:
            if item is END:  # keep the end for the next call
                self._queue.put_nowait((END, exc))
            return batch
        if exc is not None:
            raise exc
        return END

    def _read(self, loop: asyncio.AbstractEventLoop, out: asyncio.Queue) -> None:
        def put(item: Any, exc: BaseException | None = None) -> None:
            try:
                loop.call_soon_threadsafe(out.put_nowait, (item, exc))
            except RuntimeError:  # the caller's loop is closed: nobody reads on
                self.closed = True

        try:
            for chunk in self._chunks:
                put(chunk)
                if self.closed:
                    break
        except BaseException as exc:  # raised again in the caller's task
            put(END, exc)
            return
        finally:
            self._chunks.close()
        put(END)

    def close(self) -> None:
        """Stop reading. The engine ends the generation when its connection closes, which an
        asyncio caller's reader does at the engine's next event (the slot is returned at once:
        llama-server queues a request beyond its slots for that moment)."""
        self.closed = True
        if self._queue is None:
            self._chunks.close()
        self._done(self)


class LocalStreams:
    """This process's local streams (one registry per process, ``local_streams()``): one engine
    client per engine address (its connections kept open), the reader threads of asyncio callers,
    and the running streams by request id for ``abort``."""

    def __init__(self) -> None:
        self._apis: dict[str, OpenAICompatBackend] = {}
        self._running: dict[str, LocalStream] = {}
        self._lock = threading.Lock()
        # one thread per running asyncio stream, reused (starting one costs about a millisecond)
        self._readers = ThreadPoolExecutor(512, thread_name_prefix="engine-stream")

    def open(self, options: dict[str, Any], request: ChatRequest) -> LocalStream:
        """A stream of ``request`` from the engine that ``options`` (``EngineBackend.local_endpoint``)
        reach."""
        with self._lock:
            api = self._apis.get(options["base_url"])
            if api is None:
                api = self._apis[options["base_url"]] = OpenAICompatBackend("", options)
        stream = LocalStream(api, request, self._readers, self._forget)
        with self._lock:
            self._running[request.request_id] = stream
        return stream

    def _forget(self, stream: LocalStream) -> None:
        with self._lock:
            if self._running.get(stream.request_id) is stream:
                del self._running[stream.request_id]

    def abort(self, request_id: str) -> bool:
        """Stop local stream ``request_id``; whether this process runs it."""
        with self._lock:
            stream = self._running.get(request_id)
        if stream is not None:
            stream.abort()
        return stream is not None


_registry: LocalStreams | None = None
_registry_lock = threading.Lock()


def local_streams() -> LocalStreams:
    """The registry of this process's local streams, shared by every client in it."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = LocalStreams()
        return _registry
