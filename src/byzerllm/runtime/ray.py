"""The Ray runtime: a deployment is a named pool of worker actors on a Ray cluster.

Layout on the cluster (namespace ``byzerllm``)::

    DeploymentPool  "deployment:<name>"   detached async actor: spec, leases, counts, queue
      Worker x N                           one backend each; restarted by Ray when its process dies

Each worker has ``worker_concurrency`` slots. A client keeps a view of its own requests per
worker and sends a request straight to the worker the load-balancing strategy picks among those
it has not filled itself (one actor call, streamed tokens one hop). The worker takes a free slot
and tells the pool, without waiting for it, that the request runs; when the worker is full (other
clients use it) it answers at once that it is busy and the client asks the pool for a lease
instead: the pool sees every worker's slots, picks one with the same strategy, and queues the
request, up to ``max_queue`` waiting requests, while every slot is busy. A worker serves a leased
request in the slot the pool reserved for it (waiting a moment if a direct request took it first).
The pool is only on the request path when the workers are full, which keeps a request to one
actor round trip (bench/saas_overhead.py).

The worker returns the slot when the request ends (the caller does too, for a worker that died;
returning is idempotent). When the worker of a request dies before the request produced any
output (a non-streamed request, or a stream before its first chunk), the request is sent again (a
few times, with short pauses); a stream that already delivered text ends with
``WorkerDiedError``. Ray restarts the dead worker's process and reloads its backend. Counts (total
requests, busy slots, last work time, token totals) live in the pool and survive a worker restart.

Ray Serve was not used: its router picks replicas by power-of-two choices and exposes neither
per-replica counts nor the lru / round_robin strategies of the Byzer-LLM documents.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from ..errors import (
    ByzerLLMError,
    DeploymentError,
    DeploymentExistsError,
    DeploymentStartingError,
    DeploymentUndeployedError,
    ModelNotFoundError,
    QueueFullError,
    WorkerDiedError,
)
from ..types import ChatChunk, ChatRequest, ChatResponse
from .cluster import NAMESPACE
from .spec import (  # noqa: F401 - LOAD_BALANCE_STRATEGIES re-exported
    LOAD_BALANCE_STRATEGIES,
    DeploymentSpec,
    mask_secrets,
    pick_worker,
    stat_counts,
)
from .worker import Worker

log = logging.getLogger("byzerllm.runtime")
PREFIX = "deployment:"
# A request whose worker died before it produced output is sent again, after these pauses
# (seconds): Ray needs a moment to notice a dead process before it routes to its replacement.
RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0)
# After a worker answered busy, the client sends the deployment's requests through the pool for
# this long (seconds): its workers are full with other clients' requests, and the pool queues fairly.
VIA_POOL_AFTER_BUSY = 0.2
# How long a worker gathers slot counts before sending them to its pool in one message (seconds):
# stat and the pool's routing see a request this much later at most.
POOL_MESSAGE_WINDOW = 0.005
# Slot returns that arrived before the worker's claim (kept to cancel the late claim), at most.
EARLY_RELEASES = 4096
# A slot the pool leased must reach its worker within this long (seconds), else the pool takes it
# back: its caller gave up (a cancelled or timed-out wait) or died while it waited in the queue.
# A caller sends its request at once, and the worker says so within POOL_MESSAGE_WINDOW.
LEASE_USE_TIMEOUT = 3.0


class RayWorker(Worker):
    """A worker as a Ray actor with ``capacity`` slots. It returns the slot of each request to its
    pool when the request ends, so a slot comes back even when the caller's process died
    mid-request.

    Every request method takes ``lease`` (the slot's id) and ``direct``: a direct request (routed
    by the client) takes a free slot or none, and then returns ``None`` (streams yield ``None``)
    meaning "busy, ask the pool"; a leased request (routed by the pool) waits for its slot.
    """

    def __init__(
        self, pool_name: str, index: int, capacity: int, backend: str, model_path: str, options: dict[str, Any]
    ) -> None:
        super().__init__(backend, model_path, options)
        self._pool_name = pool_name
        self._pool = None
        self._index = index
        self._slots = threading.BoundedSemaphore(capacity)
        # Slot counts and token totals go to the pool from one thread, in order, a few requests'
        # worth per message: submitting an actor call costs about 0.5 ms, kept off the request path.
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._send_to_pool, name="pool-messages", daemon=True).start()
        # a restarted worker holds no request: the pool forgets the slots its previous process held,
        # whose last messages (a release within the last few milliseconds) died with it
        self._tell_pool("start", index)

    def _send_to_pool(self) -> None:
        sent: deque = deque(maxlen=64)  # the latest messages, which the pool may not have applied yet
        while True:
            batch = [self._outbox.get()]
            deadline = time.monotonic() + POOL_MESSAGE_WINDOW
            while batch[-1][0] != "flush" and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._outbox.get(timeout=left))
                except queue.Empty:
                    break
            flushed = [args[0] for method, args in batch if method == "flush"]
            batch = [m for m in batch if m[0] != "flush"]
            try:
                if batch:
                    if self._pool is None:
                        self._pool = ray.get_actor(self._pool_name, namespace=NAMESPACE)
                    sent.append(self._pool.apply.remote(batch))
                if flushed:  # the pool's stat waits until what was sent is counted
                    ray.get(list(sent), timeout=2)
                    sent.clear()
            except (RayActorError, GetTimeoutError, ValueError):  # the pool is gone: the deployment was removed
                pass
            except Exception:  # keep sending later counts; say what went wrong
                log.exception("worker %s could not send its counts to pool %s", self._index, self._pool_name)
            for done in flushed:
                done.set()

    def flush_counts(self) -> None:
        """Send the slot counts gathered so far to the pool now (``stat`` asks before answering)."""
        done = threading.Event()
        self._outbox.put(("flush", (done,)))
        done.wait(1.0)

    def _tell_pool(self, method: str, *args: Any) -> None:
        self._outbox.put((method, args))

    def _admit(self, lease: int | str, direct: bool) -> bool:
        if not direct:
            self._tell_pool("use", lease, self._index)  # the lease reached its worker: keep it
            self._slots.acquire()  # the pool reserved it; a direct request may hold it a moment longer
            return True
        if not self._slots.acquire(blocking=False):
            return False
        self._tell_pool("claim", lease, self._index)
        return True

    def _release(self, lease: int | str, *usage: Any) -> None:
        self._slots.release()
        self._tell_pool("release", lease, *usage)

    def chat_leased(self, request: ChatRequest, lease: int | str, direct: bool = False) -> ChatResponse | None:
        if not self._admit(lease, direct):
            return None
        usage = (0, 0, True)  # a failure unless it returns
        try:
            resp = self.chat(request)
            usage = (resp.input_tokens, resp.generated_tokens, False)
            return resp
        finally:
            self._release(lease, *usage)

    def embed_leased(
        self, texts: list[str], query: bool, lease: int | str, direct: bool = False
    ) -> tuple[list[list[float]], int] | None:
        if not self._admit(lease, direct):
            return None
        try:
            return self.embed(texts, query)
        finally:
            self._release(lease)

    def rerank_leased(
        self, pairs: list[tuple[str, str]], lease: int | str, direct: bool = False
    ) -> tuple[list[float], int] | None:
        if not self._admit(lease, direct):
            return None
        try:
            return self.rerank(pairs)
        finally:
            self._release(lease)

    def stream_leased(self, request: ChatRequest, lease: int | str, direct: bool = False) -> Iterator[ChatChunk | None]:
        if not self._admit(lease, direct):
            yield None
            return
        last = None
        failed = False
        try:
            for last in self.stream(request):
                yield last
        except Exception:
            failed = True
            raise
        finally:
            done = last is not None and last.finish_reason is not None
            self._release(lease, last.input_tokens if done else 0, last.generated_tokens if done else 0, failed)


class DeploymentPool:
    """The pool actor of one deployment (async: one event loop, no locks)."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.state = "starting"
        n, k = spec.num_workers, spec.worker_concurrency
        worker_cls = ray.remote(RayWorker)
        self.workers = [
            worker_cls.options(
                num_cpus=spec.cpus_per_worker,
                num_gpus=spec.gpus_per_worker,
                # k running, leased requests waiting out a direct one, and ready/meta/cancel calls
                max_concurrency=2 * k + 4,
                max_restarts=-1,
                max_task_retries=0,
                namespace=NAMESPACE,
            ).remote(_actor_name(spec.name), i, k, spec.backend, spec.model_path, spec.options)
            for i in range(n)
        ]
        self.in_flight = [0] * n
        self.total_requests = [0] * n
        self.last_work = [time.time()] * n
        self.leases: dict[int | str, int] = {}
        # leases granted by ``acquire`` whose request has not reached the worker: lease -> grant time
        self._unused: dict[int, float] = {}
        # leases taken back unused (lease -> worker), should their request reach the worker after all
        self._taken_back: OrderedDict[int, int] = OrderedDict()
        self._reaper: asyncio.Task | None = None
        self._early_releases: OrderedDict[str, None] = OrderedDict()
        self._lease_ids = itertools.count(1)
        self._rr = itertools.cycle(range(n))
        self._cond = asyncio.Condition()
        self.waiting = 0
        # token totals of the deployment's requests, as the backends report them (the provider's usage)
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "failed_requests": 0}
        self.meta_cache: dict[str, Any] | None = None

    def get_workers(self) -> list:
        return self.workers

    def routing(self) -> dict[str, Any]:
        """What a client needs to send requests straight to the workers."""
        return {
            "workers": self.workers,
            "state": self.state,
            "capacity": self.spec.worker_concurrency,
            "load_balance": self.spec.load_balance,
        }

    async def wait_ready(self) -> dict[str, Any]:
        """Wait for every worker's backend; return worker 0's meta. Raises its start-up error."""
        infos = await asyncio.gather(*(w.ready.remote() for w in self.workers))
        self.meta_cache = infos[0]["meta"]
        self.state = "running"
        return self.meta_cache

    def status(self) -> str:
        return self.state

    def info(self) -> dict[str, Any]:
        """Spec (secrets masked), state and meta."""
        spec = asdict(self.spec)
        spec["options"] = mask_secrets(spec["options"])
        return {"spec": spec, "state": self.state, "meta": self.meta_cache, "usage": self.usage_totals()}

    async def worker_pids(self) -> list[int]:
        infos = await asyncio.gather(*(w.ready.remote() for w in self.workers))
        return [i["pid"] for i in infos]

    def _pick(self) -> int | None:
        return pick_worker(
            self.spec.load_balance, self.in_flight, self.last_work, self.spec.worker_concurrency, self._rr
        )

    def _count(self, lease: int | str, idx: int) -> None:
        self.leases[lease] = idx
        self.in_flight[idx] += 1
        self.total_requests[idx] += 1
        self.last_work[idx] = time.time()

    async def acquire(self) -> tuple[int, int]:
        """Lease a worker slot: ``(lease_id, worker_index)``; waits while every slot is busy, up to
        ``max_queue`` waiting requests (``QueueFullError`` beyond)."""
        if self.state == "starting":
            raise DeploymentStartingError(f"deployment {self.spec.name!r} is starting; retry shortly")
        async with self._cond:
            while True:
                if self.state == "stopping":
                    raise DeploymentUndeployedError(f"deployment {self.spec.name!r} is being undeployed")
                idx = self._pick()
                if idx is not None:
                    break
                if self.waiting >= self.spec.max_queue:
                    raise QueueFullError(
                        f"deployment {self.spec.name!r} is busy: all {len(self.workers)} workers are serving and "
                        f"{self.waiting} requests are queued (max_queue {self.spec.max_queue})"
                    )
                self.waiting += 1
                try:
                    await self._cond.wait()
                finally:
                    self.waiting -= 1
            lease = next(self._lease_ids)
            self._count(lease, idx)
            self._unused[lease] = time.monotonic()
            if self._reaper is None:
                self._reaper = asyncio.get_running_loop().create_task(self._take_back_unused())
            return lease, idx

    async def _take_back_unused(self) -> None:
        """Return the slots of leases whose request never reached a worker (``LEASE_USE_TIMEOUT``)."""
        while self.state != "stopping":
            await asyncio.sleep(LEASE_USE_TIMEOUT / 3)
            now = time.monotonic()
            for lease in [lease for lease, t in self._unused.items() if now - t > LEASE_USE_TIMEOUT]:
                del self._unused[lease]
                idx = self.leases.pop(lease, None)
                if idx is None:
                    continue
                self._taken_back[lease] = idx
                if len(self._taken_back) > EARLY_RELEASES:
                    self._taken_back.popitem(last=False)
                self.in_flight[idx] -= 1
                async with self._cond:
                    self._cond.notify()

    async def worker_started(self, idx: int) -> None:
        """Worker ``idx`` (re)started with every slot free: its earlier leases are void (their callers
        saw it die; returning them again is harmless)."""
        for lease in [lease for lease, i in self.leases.items() if i == idx]:
            del self.leases[lease]
            self._unused.pop(lease, None)
        if self.in_flight[idx]:
            self.in_flight[idx] = 0
            async with self._cond:
                self._cond.notify_all()

    def use(self, lease: int, idx: int) -> None:
        """A leased request reached its worker: the lease is kept until its release. One taken back
        meanwhile (a caller slower than ``LEASE_USE_TIMEOUT``) is counted again, since it runs."""
        if self._unused.pop(lease, None) is None and self._taken_back.pop(lease, None) is not None:
            self.leases[lease] = idx
            self.in_flight[idx] += 1

    async def apply(self, messages: list[tuple[str, tuple]]) -> None:
        """Messages from a worker, in order: ``("start", (idx,))`` when its process (re)starts, and
        ``("claim", args)``, ``("use", args)``, ``("release", args)`` for its requests."""
        for method, args in messages:
            if method == "claim":
                self.claim(*args)
            elif method == "start":
                await self.worker_started(*args)
            elif method == "use":
                self.use(*args)
            else:
                await self.release(*args)

    def claim(self, lease: str, idx: int) -> None:
        """A worker took a slot for a request sent to it directly (``lease`` is the client's id)."""
        if self._early_releases.pop(lease, 0) is None:
            return  # its caller already gave it back (the worker died or the request failed)
        self._count(lease, idx)

    def usage_totals(self) -> dict[str, int]:
        """``prompt_tokens``, ``completion_tokens``, ``total_tokens`` and ``failed_requests``."""
        u = self.usage
        return {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}

    async def release(
        self, lease: int, prompt_tokens: int = 0, completion_tokens: int = 0, failed: bool = False
    ) -> None:
        """Return a lease (idempotent: a lease returned twice is counted once); the worker adds its
        request's token counts (or a failure) to the totals in the same message, the caller a failure
        when the worker died."""
        self._unused.pop(lease, None)
        idx = self.leases.pop(lease, None)
        if idx is not None or (isinstance(lease, str) and lease not in self._early_releases):
            self.usage["prompt_tokens"] += prompt_tokens
            self.usage["completion_tokens"] += completion_tokens
            self.usage["failed_requests"] += int(failed)
        if idx is None:
            if isinstance(lease, str):  # a direct request's slot, returned before its claim arrived
                self._early_releases[lease] = None
                if len(self._early_releases) > EARLY_RELEASES:
                    self._early_releases.popitem(last=False)
            return
        self.in_flight[idx] -= 1
        self.last_work[idx] = time.time()
        async with self._cond:
            self._cond.notify()

    async def stat(self) -> dict[str, Any]:
        """Counts in the shape of ``byzerllm stat`` (blog post 002), with every request that ended
        before the call counted (the workers send what they gathered first)."""
        try:
            await asyncio.wait_for(
                asyncio.gather(*(w.flush_counts.remote() for w in self.workers), return_exceptions=True), 1.0
            )
        except TimeoutError:  # a worker restarting: its counts arrive later
            pass
        return stat_counts(self.spec, self.in_flight, self.total_requests, self.last_work, self.waiting, self.usage)

    async def shutdown(self) -> None:
        """Stop taking requests and kill the workers; running requests end with an error."""
        self.state = "stopping"
        async with self._cond:
            self._cond.notify_all()
        for w in self.workers:
            ray.kill(w, no_restart=True)


def _actor_name(name: str) -> str:
    return PREFIX + name


def list_deployments() -> list[str]:
    """Names of the deployments on the connected cluster, sorted."""
    actors = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        a["name"][len(PREFIX) :] for a in actors if a.get("namespace") == NAMESPACE and a["name"].startswith(PREFIX)
    )


def _unwrap(exc: BaseException) -> BaseException:
    """The error raised inside the actor, for a RayTaskError that wraps one of ours."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ByzerLLMError):
            return cause
    return exc


def _give_up(error: BaseException, attempt: int, started: bool = False) -> bool:
    """Whether a failed request is final: not a worker death, output already delivered, or the
    last attempt."""
    return not isinstance(error, WorkerDiedError) or started or attempt == len(RETRY_PAUSES)


class _Route:
    """What one client knows of a deployment to send requests straight to its workers: the worker
    handles and the requests this client has in flight on each (thread-safe)."""

    def __init__(self, pool: Any, routing: dict[str, Any]) -> None:
        self.pool = pool
        self.workers: list = routing["workers"]
        self.running = routing["state"] == "running"
        self._capacity = routing["capacity"]
        self._strategy = routing["load_balance"]
        n = len(self.workers)
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

    def direct_slot(self, via_pool: bool) -> _Slot | None:
        """A slot on a worker picked here, unless ``via_pool`` or ``take`` says to ask the pool."""
        idx = None if via_pool else self.take()
        return None if idx is None else _Slot(self, idx, self.lease_id(), True)

    def leased_slot(self, lease: int, idx: int) -> _Slot:
        """The slot the pool leased, counted as this client's request on that worker."""
        with self._lock:
            self._in_flight[idx] += 1
        return _Slot(self, idx, lease, False)

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
class _Slot:
    """A worker slot one attempt of a request runs in."""

    route: _Route
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


class RayRuntime:
    """Client side of the Ray runtime: finds deployments by name and routes requests."""

    def __init__(self) -> None:
        self._handles: dict[str, _Route] = {}

    # --- deployments -----------------------------------------------------------------
    def _pool(self, name: str):
        try:
            return ray.get_actor(_actor_name(name), namespace=NAMESPACE)
        except ValueError:
            deployed = list_deployments()
            raise ModelNotFoundError(
                f"model {name!r} is not deployed; deployed: {', '.join(deployed) or 'none'}",
                param="model",
                available=deployed,
            ) from None

    def _lookup(self, name: str, refresh: bool = False) -> _Route:
        route = None if refresh else self._handles.get(name)
        if route is None:
            pool = self._pool(name)
            route = _Route(pool, ray.get(pool.routing.remote()))
            if route.running:  # a starting deployment is looked up again on the next request
                self._handles[name] = route
        return route

    def exists(self, name: str) -> bool:
        return name in list_deployments()

    def deploy(
        self, spec: DeploymentSpec, timeout: float = 600.0, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Create the pool and wait for every worker to load its backend.

        ``on_progress(ready, total)`` is called as workers become ready. Returns the model
        meta. Raises ``DeploymentExistsError``, ``DeploymentError`` (resources, timeout) or the
        backend's start-up error (``ModelPathError``, ``UnsupportedParameterError``...); on any
        failure nothing of the deployment is left on the cluster.
        """
        spec.validate()
        if self.exists(spec.name):
            raise DeploymentExistsError(f"deployment {spec.name!r} already exists; undeploy it first", param="udf_name")
        total = ray.cluster_resources()
        for res, per in (("CPU", spec.cpus_per_worker), ("GPU", spec.gpus_per_worker)):
            need = per * spec.num_workers
            if need > total.get(res, 0) + 1e-9:
                raise DeploymentError(
                    f"deployment {spec.name!r} needs {need:g} {res} ({spec.num_workers} workers x {per:g}); "
                    f"the cluster has {total.get(res, 0):g}",
                    param=f"{res.lower()}s_per_worker",
                )
        pool = (
            ray.remote(DeploymentPool)
            .options(
                name=_actor_name(spec.name),
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                max_restarts=0,
                max_concurrency=1000,
            )
            .remote(spec)
        )
        try:
            workers = ray.get(pool.get_workers.remote())
            pending = {w.ready.remote(): i for i, w in enumerate(workers)}
            done = 0
            deadline = time.monotonic() + timeout
            if on_progress:
                on_progress(0, len(workers))
            while pending:
                left = deadline - time.monotonic()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(left, 0))
                if not ready:
                    avail = ray.available_resources()
                    raise DeploymentError(
                        f"deployment {spec.name!r}: {len(pending)} of {len(workers)} workers "
                        f"not ready after {timeout:g}s "
                        f"(available: {avail.get('CPU', 0):g} CPU, {avail.get('GPU', 0):g} GPU)"
                    )
                for ref in ready:
                    pending.pop(ref)
                    ray.get(ref)
                    done += 1
                    if on_progress:
                        on_progress(done, len(workers))
            return ray.get(pool.wait_ready.remote())
        except BaseException as exc:
            self._kill(pool)
            raise _unwrap(exc) from None

    def _kill(self, pool) -> None:
        try:
            ray.get(pool.shutdown.remote(), timeout=30)
        except (RayActorError, RayTaskError, GetTimeoutError):  # a pool that cannot shut down is killed anyway
            pass
        ray.kill(pool, no_restart=True)

    def undeploy(self, name: str) -> None:
        """Remove a deployment; running requests end with ``DeploymentUndeployedError``.
        Raises ``ModelNotFoundError`` when no deployment has this name."""
        pool = self._pool(name)
        self._kill(pool)
        self._handles.pop(name, None)
        deadline = time.monotonic() + 30
        while self.exists(name) and time.monotonic() < deadline:
            time.sleep(0.05)

    def info(self, name: str) -> dict[str, Any]:
        return ray.get(self._pool(name).info.remote())

    def stat(self, name: str) -> dict[str, Any]:
        return ray.get(self._pool(name).stat.remote())

    def worker_pids(self, name: str) -> list[int]:
        return ray.get(self._pool(name).worker_pids.remote())

    def meta(self, name: str) -> dict[str, Any]:
        info = self.info(name)
        meta = dict(info["meta"] or {})
        meta.setdefault("backend", info["spec"]["backend"])
        meta["model_deploy_type"] = (
            "saas" if info["spec"]["pretrained_model_type"].startswith("saas/") else "proprietary"
        )
        meta["backend"] = "ray/" + info["spec"]["backend"]
        return meta

    # --- requests --------------------------------------------------------------------
    def abort(self, name: str, request_id: str) -> None:
        """Cancel request ``request_id`` on whichever worker of ``name`` runs it (a dead worker has
        nothing to cancel)."""
        refs = [w.cancel.remote(request_id) for w in self._lookup(name, refresh=True).workers]
        for ref in refs:
            try:
                ray.get(ref)
            except RayActorError:
                pass  # the worker died: its requests already ended

    def _failure(self, name: str, exc: BaseException) -> BaseException:
        """Map a Ray error during a request to the error the user should see."""
        exc = _unwrap(exc)
        if isinstance(exc, ByzerLLMError):
            return exc
        if isinstance(exc, RayActorError):
            self._handles.pop(name, None)
            try:
                state = ray.get(self._pool(name).status.remote(), timeout=10)
            except (ModelNotFoundError, RayActorError, GetTimeoutError):
                state = "gone"
            if state in ("stopping", "gone"):
                return DeploymentUndeployedError(f"deployment {name!r} was undeployed while the request was running")
            return WorkerDiedError(
                f"the worker of {name!r} serving this request died; it is being replaced, retry the request"
            )
        return exc

    def _take_steps(self, name: str, route: _Route):
        """The one rule for leasing a slot from the pool, as a plan its drivers run: yields
        ``("acquire", route)`` (the driver sends back ``(lease, idx)`` or throws in the Ray error) and
        ``("lookup", None)`` (the driver sends back a fresh route). A pool that is gone is looked up
        once more (it may have been restarted); a second loss is the deployment's end
        (``DeploymentUndeployedError``); an error the pool raised (``QueueFullError``...) reaches the
        caller as is."""
        for attempt in (0, 1):
            try:
                with route.waiting():
                    lease, idx = yield "acquire", route
                return route.leased_slot(lease, idx)
            except RayActorError:
                if attempt == 1:
                    raise DeploymentUndeployedError(f"deployment {name!r} is gone") from None
                route = yield "lookup", None
            except RayTaskError as exc:
                raise _unwrap(exc) from None
        raise AssertionError("unreachable")

    def _take(self, name: str, via_pool: bool) -> _Slot:
        """A slot for one attempt: a worker picked here (direct) unless ``via_pool`` or this client
        filled every worker, else a lease from the pool (waits in its queue)."""
        route = self._lookup(name)
        if slot := route.direct_slot(via_pool):
            return slot
        steps, reply, error = self._take_steps(name, route), None, None
        try:
            while True:
                what, route = steps.throw(error) if error else steps.send(reply)
                reply, error = None, None
                try:
                    if what == "acquire":
                        reply = ray.get(route.pool.acquire.remote())
                    else:
                        reply = self._lookup(name, refresh=True)
                except (RayActorError, RayTaskError) as exc:
                    error = exc
        except StopIteration as done:
            return done.value

    async def _atake(self, name: str, via_pool: bool) -> _Slot:
        """``_take`` for asyncio code: Ray lookups run in a thread, so the event loop never blocks."""
        route = self._handles.get(name) or await asyncio.to_thread(self._lookup, name)
        if slot := route.direct_slot(via_pool):
            return slot
        steps, reply, error = self._take_steps(name, route), None, None
        try:
            while True:
                what, route = steps.throw(error) if error else steps.send(reply)
                reply, error = None, None
                try:
                    if what == "acquire":
                        ref = route.pool.acquire.remote()
                        try:
                            reply = await ref
                        except asyncio.CancelledError:
                            # the caller gave up: leave the queue now (a slot granted meanwhile goes
                            # back unused after LEASE_USE_TIMEOUT)
                            ray.cancel(ref)
                            raise
                    else:
                        reply = await asyncio.to_thread(self._lookup, name, True)
                except (RayActorError, RayTaskError) as exc:
                    error = exc
        except StopIteration as done:
            return done.value

    def _call(self, name: str, method: str, *args: Any) -> Any:
        """A unary worker call (``chat_leased``, ``embed_leased``, ``rerank_leased``) in a slot, sent
        again when its worker died (it produced no output, so a retry is safe)."""
        attempt, via_pool = 0, False
        while True:
            slot = self._take(name, via_pool)
            failure, ok = None, False
            try:
                out = ray.get(getattr(slot.worker, method).remote(*args, slot.lease, slot.direct))
                ok = True
            except (RayTaskError, RayActorError) as exc:
                failure = exc
            finally:
                slot.end(ok, failure)
            if failure is not None:
                error = self._failure(name, failure)
                if _give_up(error, attempt):
                    raise error from None
                attempt += 1
                time.sleep(RETRY_PAUSES[attempt - 1])
                continue
            if out is not None:
                return out  # the worker returned the slot
            slot.route.busy()
            via_pool = True

    def chat(self, name: str, request: ChatRequest) -> ChatResponse:
        return self._call(name, "chat_leased", request)

    def embed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return self._call(name, "embed_leased", texts, query)

    def rerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return self._call(name, "rerank_leased", pairs)

    def stream(self, name: str, request: ChatRequest) -> Iterator[ChatChunk]:
        attempt, via_pool = 0, False
        while True:
            slot = self._take(name, via_pool)
            finished = started = busy = False
            failure = None
            try:
                for ref in slot.worker.stream_leased.options(num_returns="streaming").remote(
                    request, slot.lease, slot.direct
                ):
                    chunk = ray.get(ref)
                    if chunk is None:
                        busy = finished = True
                        break
                    started = True
                    finished = chunk.finish_reason is not None
                    yield chunk
                if not busy:
                    return
            except (RayTaskError, RayActorError) as exc:
                finished, failure = False, exc
                error = self._failure(name, exc)
                if _give_up(error, attempt, started):
                    raise error from None
                attempt += 1
                time.sleep(RETRY_PAUSES[attempt - 1])
                continue
            finally:
                if not finished:  # failed, or the caller stopped reading: stop the generation too
                    slot.worker.cancel.remote(request.request_id)
                slot.end(finished, failure)
            slot.route.busy()
            via_pool = True

    async def _acall(self, name: str, method: str, *args: Any) -> Any:
        """``_call`` for asyncio code."""
        attempt, via_pool = 0, False
        while True:
            slot = await self._atake(name, via_pool)
            failure, ok = None, False
            try:
                out = await getattr(slot.worker, method).remote(*args, slot.lease, slot.direct)
                ok = True
            except (RayTaskError, RayActorError) as exc:
                failure = exc
            finally:
                slot.end(ok, failure)
            if failure is not None:
                error = await asyncio.to_thread(self._failure, name, failure)
                if _give_up(error, attempt):
                    raise error from None
                attempt += 1
                await asyncio.sleep(RETRY_PAUSES[attempt - 1])
                continue
            if out is not None:
                return out
            slot.route.busy()
            via_pool = True

    async def achat(self, name: str, request: ChatRequest) -> ChatResponse:
        return await self._acall(name, "chat_leased", request)

    async def aembed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return await self._acall(name, "embed_leased", texts, query)

    async def arerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return await self._acall(name, "rerank_leased", pairs)

    async def astream(self, name: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        attempt, via_pool = 0, False
        while True:
            slot = await self._atake(name, via_pool)
            finished = started = busy = False
            failure = None
            try:
                async for ref in slot.worker.stream_leased.options(num_returns="streaming").remote(
                    request, slot.lease, slot.direct
                ):
                    chunk = await ref
                    if chunk is None:
                        busy = finished = True
                        break
                    started = True
                    finished = chunk.finish_reason is not None
                    yield chunk
                if not busy:
                    return
            except (RayTaskError, RayActorError) as exc:
                finished, failure = False, exc
                error = await asyncio.to_thread(self._failure, name, exc)
                if _give_up(error, attempt, started):
                    raise error from None
                attempt += 1
                await asyncio.sleep(RETRY_PAUSES[attempt - 1])
                continue
            finally:
                if not finished:
                    slot.worker.cancel.remote(request.request_id)
                slot.end(finished, failure)
            slot.route.busy()
            via_pool = True
