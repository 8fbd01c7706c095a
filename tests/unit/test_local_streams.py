"""LocalStream: a stream read from an engine by the caller itself, for blocking and asyncio callers.
The engine client is replaced by a generator of chunks (its own tests are the SaaS ones)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from byzerllm.errors import UpstreamError
from byzerllm.runtime.ray.local_streams import LocalStream, LocalStreams
from byzerllm.runtime.ray.routing import END
from byzerllm.types import ChatChunk, ChatRequest


class Engine:
    """Yields ``n`` chunks then the finish chunk; waits on ``gate`` before each chunk when given;
    raises ``fail`` after ``fail_after`` chunks."""

    def __init__(self, n: int, gate: threading.Semaphore | None = None, fail_after: int | None = None) -> None:
        self.n, self.gate, self.fail_after = n, gate, fail_after
        self.closed = threading.Event()
        self.produced = 0

    def stream(self, request, cancelled):
        try:
            for i in range(self.n):
                if self.gate is not None:
                    self.gate.acquire()
                if self.fail_after is not None and i == self.fail_after:
                    raise UpstreamError("connection to the engine failed", status=502)
                self.produced += 1
                yield ChatChunk(f"t{i}", None, 3, i + 1)
                if cancelled():
                    yield ChatChunk("", "cancelled", 3, i + 1)
                    return
            yield ChatChunk("", "length", 3, self.n)
        finally:
            self.closed.set()


def request(rid: str = "r1") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], request_id=rid)


@pytest.fixture
def readers():
    with ThreadPoolExecutor(4) as pool:
        yield pool


def gated(n: int, readers) -> tuple[threading.Semaphore, Engine, LocalStream]:
    """An engine that makes a chunk each time its gate is released, and the stream read from it."""
    gate = threading.Semaphore(0)
    engine = Engine(n, gate)
    return gate, engine, LocalStream(engine, request(), readers, lambda s: None)


def texts(batches) -> list[str]:
    return [c.delta for batch in batches for c in batch]


def test_a_blocking_caller_gets_one_chunk_a_call_then_the_end(readers):
    stream = LocalStream(Engine(3), request(), readers, lambda s: None)
    batches = []
    while (batch := stream.next_batch()) is not END:
        batches.append(batch)
    assert [len(b) for b in batches] == [1, 1, 1, 1]
    assert texts(batches) == ["t0", "t1", "t2", ""] and stream.last.finish_reason == "length"


def test_an_asyncio_caller_gets_the_chunks_that_arrived_together(readers):
    gate, engine, stream = gated(5, readers)

    async def run():
        gate.release()
        first = await stream.anext_batch()
        for _ in range(4):  # four chunks produced while the caller was away
            gate.release()
        while engine.produced < 5:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        rest = await stream.anext_batch()
        return first, rest, await stream.anext_batch()

    first, rest, end = asyncio.run(run())
    assert texts([first]) == ["t0"] and texts([rest]) == ["t1", "t2", "t3", "t4", ""] and end is END


def test_an_engine_error_reaches_the_caller_after_the_chunks_before_it(readers):
    stream = LocalStream(Engine(5, fail_after=2), request(), readers, lambda s: None)

    async def run():
        got = []
        with pytest.raises(UpstreamError) as err:
            while (batch := await stream.anext_batch()) is not END:
                got.extend(batch)
        return got, err.value

    got, err = asyncio.run(run())
    assert [c.delta for c in got] == ["t0", "t1"] and err.details["status"] == 502
    blocking = LocalStream(Engine(5, fail_after=1), request(), readers, lambda s: None)
    assert texts([blocking.next_batch()]) == ["t0"]
    with pytest.raises(UpstreamError):
        blocking.next_batch()


def test_abort_ends_the_stream_at_its_next_chunk(readers):
    streams = LocalStreams()
    engine = Engine(100)
    stream = LocalStream(engine, request("ab"), readers, streams._forget)
    streams._running["ab"] = stream
    assert stream.next_batch()[0].delta == "t0"
    assert streams.abort("ab") and not streams.abort("other")
    rest = []
    while (batch := stream.next_batch()) is not END:
        rest.extend(batch)
    assert [c.finish_reason for c in rest] == ["cancelled"]
    assert engine.produced == 1  # stopped before the next token
    stream.close()
    assert "ab" not in streams._running


def test_closing_stops_the_reader_and_the_engine_stream(readers):
    gate, engine, stream = gated(1000, readers)

    async def run():
        gate.release()
        await stream.anext_batch()
        stream.close()
        for _ in range(3):
            gate.release()

    asyncio.run(run())
    assert engine.closed.wait(5) and engine.produced <= 3
    sync = LocalStream(Engine(1000), request(), readers, lambda s: None)
    sync.next_batch()
    sync.close()
    assert sync._chunks.gi_frame is None  # the generator (and the engine's connection) closed


def test_an_unexpected_engine_client_error_reaches_the_caller_by_its_type_only(readers):
    from byzerllm.errors import BackendError

    class Broken:
        def stream(self, request, cancelled):
            yield ChatChunk("t0")
            raise ValueError("the prompt was: a secret")

    stream = LocalStream(Broken(), request(), readers, lambda s: None)
    stream.next_batch()
    with pytest.raises(BackendError) as err:
        stream.next_batch()
    assert "ValueError" in str(err.value) and "secret" not in str(err.value)
