"""Client-side routing of a Ray deployment's requests: what runs in the caller's process.

A request's attempts are written once, as plans: generators that yield the effects they need
(``ROUTE``, ``ACQUIRE``, ``GET``...) and get the results sent back. ``RayRuntime`` runs each plan with
a synchronous driver (``ray.get``, ``time.sleep``) or an asynchronous one (``await``, lookups in a
thread), so the retry, busy and lease rules are the same for both.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from ...backends.engine import ENGINE_DIED
from ...errors import ByzerLLMError, DeploymentUndeployedError, UpstreamError, WorkerDiedError
from ...types import ChatRequest
from ..slots import pick_worker
from .actors import REMOTE

# A request whose worker died before it produced output is sent again, after these pauses
# (seconds): Ray needs a moment to notice a dead process before it routes to its replacement.
RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0)
# After a worker answered busy, the client sends the deployment's requests through the pool for
# this long (seconds): its workers are full with other clients' requests, and the pool queues fairly.
VIA_POOL_AFTER_BUSY = 0.2

# The effects a plan yields, each with its argument; the driver sends back what the comment says,
# or throws in the ``RayActorError`` / ``RayTaskError`` the effect raised.
ROUTE = "route"  # deployment name -> its Route (cached; looked up when missing)
REFRESH = "refresh"  # deployment name -> a Route looked up afresh
ACQUIRE = "acquire"  # Route -> (lease, worker index) from its pool (cancelled with the caller)
GET = "get"  # ObjectRef -> its value
NEXT = "next"  # streaming ObjectRefGenerator or LocalStream -> its next value, or END
LOCAL = "local"  # (engine client options, request) -> a LocalStream (local_streams.py)
FAILURE = "failure"  # (deployment name, exception) -> the error the user sees
SLEEP = "sleep"  # seconds -> None
EMIT = "emit"  # a value for the caller (a stream's chunk, a unary call's result) -> None
END = object()

Plan = Generator[tuple[str, Any], Any, Any]


def unwrap(exc: BaseException) -> BaseException:
    """The error raised inside the actor, for a RayTaskError that wraps one of ours."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ByzerLLMError):
            return cause
    return exc


def take_plan(name: str, via_pool: bool) -> Plan:
    """A slot for one attempt: a worker picked here (direct) unless ``via_pool`` or this client filled
    every worker, else a lease from the pool (waiting in its queue). A pool that is gone is looked up
    once more (it may have been restarted); a second loss is the deployment's end
    (``DeploymentUndeployedError``); an error the pool raised (``QueueFullError``...) reaches the caller
    as is."""
    route = yield ROUTE, name
    if slot := route.direct_slot(via_pool):
        return slot
    for attempt in (0, 1):
        try:
            with route.waiting():
                lease, idx = yield ACQUIRE, route
            return route.leased_slot(lease, idx)
        except RayActorError:
            if attempt == 1:
                raise DeploymentUndeployedError(f"deployment {name!r} is gone") from None
            route = yield REFRESH, name
        except RayTaskError as exc:
            raise unwrap(exc) from None
    raise AssertionError("unreachable")


def retry_plan(name: str, failure: BaseException, attempt: int, started: bool = False) -> Plan:
    """After attempt ``attempt`` failed with ``failure``: raise the error the user sees when it is
    final (not a worker death, output already delivered, or the last attempt), else pause before
    the next attempt and return its number."""
    error = yield FAILURE, (name, failure)
    if not isinstance(error, WorkerDiedError) or started or attempt == len(RETRY_PAUSES):
        raise error from None
    yield SLEEP, RETRY_PAUSES[attempt]
    return attempt + 1


def unary_plan(name: str, method: str, *args: Any) -> Plan:
    """A unary worker call (``chat_leased``, ``embed_leased``, ``rerank_leased``) in a slot, sent
    again when its worker died (it produced no output, so a retry is safe); emits the result."""
    attempt, via_pool = 0, False
    while True:
        slot = yield from take_plan(name, via_pool)
        failure, ok = None, False
        try:
            out = yield GET, getattr(slot.worker, method).remote(*args, slot.lease, slot.direct)
            ok = True
        except (RayTaskError, RayActorError) as exc:
            failure = exc
        finally:
            slot.end(ok, failure)
        if failure is not None:
            attempt = yield from retry_plan(name, failure, attempt)
        elif out is not None:
            yield EMIT, out  # the worker returned the slot
            return
        else:  # busy with other clients' requests
            slot.route.busy()
            via_pool = True


def stream_plan(name: str, request: ChatRequest) -> Plan:
    """A streamed chat in a slot, emitting each chunk; sent again when its worker died before the
    first chunk. A caller that stops reading (the plan is closed) stops the generation too. On a
    worker whose engine runs on the caller's node, the caller reads the engine's stream itself
    (``RayWorker.open_local``); elsewhere the worker relays it through Ray."""
    attempt, via_pool, resent = 0, False, False
    while True:
        slot = yield from take_plan(name, via_pool)
        finished = started = busy = errored = held = False
        failure = None
        chunks = opened = None
        try:
            if slot.route.local[slot.idx]:
                # from here the worker may hold a slot for this attempt, until told otherwise
                held = True
                options = yield GET, slot.worker.open_local.remote(request, slot.lease, slot.direct, slot.route.node_id)
                if options is None:
                    held, busy, finished = False, True, True
                elif options == REMOTE:  # the worker moved to another node: relay through Ray
                    held, slot.route.local[slot.idx] = False, False
                else:
                    chunks = opened = yield LOCAL, (options, request)
            if chunks is None and not busy:
                chunks = slot.worker.stream_leased.options(num_returns="streaming").remote(
                    request, slot.lease, slot.direct
                )
            while not busy and (batch := (yield NEXT, chunks)) is not END:
                if batch is None:
                    busy = finished = True
                    break
                for chunk in batch:  # the chunks that were ready together
                    started = True
                    finished = chunk.finish_reason is not None
                    yield EMIT, chunk
                if finished:  # done: the end of the task's stream (a moment later) need not be awaited
                    break
        except (RayTaskError, RayActorError, UpstreamError) as exc:
            finished, failure = False, exc
        except Exception:
            errored = True
            raise
        finally:
            if held:  # also when the caller gave up before open_local answered
                last = None
                if opened is not None:
                    last = opened.last
                    opened.close()
                slot.worker.close_local.remote(
                    slot.lease,
                    last.input_tokens if last else 0,
                    last.generated_tokens if last else 0,
                    failure is not None or errored or opened is None,
                )
            elif not finished:  # failed, or the caller stopped reading
                slot.worker.cancel.remote(request.request_id)
            slot.end(finished, failure)
        if isinstance(failure, UpstreamError) and opened is not None and failure.details.get("status") in (502, 504):
            try:  # a cut connection: the worker tells whether its engine died
                if (yield GET, slot.worker.engine_cut.remote()):
                    failure = WorkerDiedError(ENGINE_DIED)
                elif not started and not resent and failure.details["status"] == 502:
                    resent = True  # a kept-alive connection the engine closed as it was reused: once more
                    continue
            except (RayTaskError, RayActorError) as exc:
                failure = exc
        if failure is not None:
            attempt = yield from retry_plan(name, failure, attempt, started)
        elif not busy:
            return
        else:
            slot.route.busy()
            via_pool = True


class Route:
    """What one client knows of a deployment to send requests straight to its workers: the worker
    handles and the requests this client has in flight on each (thread-safe)."""

    def __init__(self, pool: Any, routing: dict[str, Any]) -> None:
        self.pool = pool
        self.workers: list = routing["workers"]
        self.running = routing["state"] == "running"
        self._capacity = routing["capacity"]
        self._strategy = routing["load_balance"]
        n = len(self.workers)
        # which workers' engines this process reads streams from itself: those on its own node
        # (not through Ray Client: its 127.0.0.1 is another machine's)
        engine = bool(routing.get("engine")) and not ray.util.client.ray.is_connected()
        self.node_id = ray.get_runtime_context().get_node_id() if engine else None
        self.local = [engine and node == self.node_id for node in routing.get("nodes") or [None] * n]
        self._in_flight = [0] * n
        self._last_work = [0.0] * n
        self._rr = itertools.cycle(range(n))
        self._via_pool_until = 0.0
        self.queued = 0  # this client's requests waiting in the pool's queue
        self._lock = threading.Lock()
        self._prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    def take(self) -> int | None:
        """A worker for a direct request, now counted in flight; ``None``: go through the pool (also
        while requests of this client wait there, so that a new one does not overtake them)."""
        if not self.running or self.queued or time.monotonic() < self._via_pool_until:
            return None
        with self._lock:
            idx = pick_worker(self._strategy, self._in_flight, self._last_work, self._capacity, self._rr)
            if idx is not None:
                self._in_flight[idx] += 1
                self._last_work[idx] = time.monotonic()
            return idx

    def direct_slot(self, via_pool: bool) -> Slot | None:
        """A slot on a worker picked here, unless ``via_pool`` or ``take`` says to ask the pool."""
        idx = None if via_pool else self.take()
        return None if idx is None else Slot(self, idx, self.lease_id(), True)

    def leased_slot(self, lease: int, idx: int) -> Slot:
        """The slot the pool leased, counted as this client's request on that worker."""
        with self._lock:
            self._in_flight[idx] += 1
        return Slot(self, idx, lease, False)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Count a request of this client as waiting in the pool's queue."""
        with self._lock:
            self.queued += 1
        try:
            yield
        finally:
            with self._lock:
                self.queued -= 1

    def done(self, idx: int) -> None:
        with self._lock:
            self._in_flight[idx] -= 1
            self._last_work[idx] = time.monotonic()

    def busy(self) -> None:
        """A worker was full with other clients' requests."""
        self._via_pool_until = time.monotonic() + VIA_POOL_AFTER_BUSY

    def lease_id(self) -> str:
        """A slot id unique across clients, for a direct request."""
        return f"{self._prefix}-{next(self._ids)}"


@dataclass
class Slot:
    """A worker slot one attempt of a request runs in."""

    route: Route
    idx: int
    lease: int | str
    direct: bool

    @property
    def worker(self) -> Any:
        return self.route.workers[self.idx]

    def end(self, ok: bool, error: BaseException | None = None) -> None:
        """The attempt is over (``ok``: it ended normally). The worker returns the slot to the pool
        itself; the caller returns it too (returning is idempotent) when the worker died
        (``RayActorError``), and for a pool lease whenever the attempt did not end normally (the
        worker may never have started it). A direct slot is not returned by the caller otherwise:
        the pool hears of it from the worker's batched messages, and a return that overtook the
        worker's claim would drop the request from the counts."""
        if isinstance(error, RayActorError) or (not ok and not self.direct):
            # a failure: counted once, by whichever of the worker and the caller returns it first
            self.route.pool.release.remote(self.lease, 0, 0, True)
        self.route.done(self.idx)
