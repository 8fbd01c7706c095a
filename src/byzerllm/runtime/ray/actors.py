"""The actors of a Ray deployment, the code that runs on the cluster (see ``byzerllm.runtime.ray``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ...errors import ByzerLLMError, DeploymentStartingError, DeploymentUndeployedError
from ...types import ChatChunk, ChatRequest, ChatResponse
from ..cluster import NAMESPACE
from ..slots import SlotCounts
from ..spec import DeploymentSpec, mask_secrets
from ..worker import Worker
from .model_files import ModelFiles, materialize

log = logging.getLogger("byzerllm.runtime")
T = TypeVar("T")
PREFIX = "deployment:"
# How long a worker gathers slot counts before sending them to its pool in one message (seconds):
# stat and the pool's routing see a request this much later at most.
POOL_MESSAGE_WINDOW = 0.005
# Slot returns that arrived before the worker's claim (kept to cancel the late claim), at most.
EARLY_RELEASES = 4096
# A slot the pool leased must reach its worker within this long (seconds), else the pool takes it
# back: its caller gave up (a cancelled or timed-out wait) or died while it waited in the queue.
# A caller sends its request at once, and the worker says so within POOL_MESSAGE_WINDOW.
LEASE_USE_TIMEOUT = 3.0
# Restarts and failures a pool remembers for ``stat`` and ``info``.
EVENTS = 50
# A local stream's slot (see ``RayWorker.open_local``) not closed within the engine's request
# timeout plus this margin (seconds) is returned by the worker: its caller died mid-stream.
LOCAL_SLOT_MARGIN = 30.0
# A value of ``open_local``: the caller is not on this worker's node (the worker moved), use Ray.
REMOTE = "remote"


def remember(recent: OrderedDict, key: Any, value: Any = None) -> None:
    """Keep ``key`` in ``recent``, dropping the oldest beyond ``EARLY_RELEASES`` entries."""
    recent[key] = value
    if len(recent) > EARLY_RELEASES:
        recent.popitem(last=False)


def _where(info: dict[str, Any]) -> dict[str, Any]:
    return {"pid": info["pid"], "node": info.get("node"), "node_id": info.get("node_id")}


def worker_bundle(spec: DeploymentSpec) -> dict[str, float]:
    """The resources of one worker as a placement-group bundle (Ray refuses an empty bundle)."""
    bundle = {"CPU": max(spec.cpus_per_worker, 0.001), "GPU": spec.gpus_per_worker, **spec.resources}
    return {k: v for k, v in bundle.items() if v}


def keep_files(files: ModelFiles) -> ModelFiles:
    """A copy of ``files`` whose chunks this process owns (an object lives as long as its owner)."""
    kept = {rel: [ray.put(ray.get(ref)) for ref in refs] for rel, refs in files.files.items()}
    return ModelFiles(files.name, files.sha256, files.size, files.is_dir, kept)


def actor_name(name: str) -> str:
    """The name of deployment ``name``'s pool actor (namespace ``byzerllm``)."""
    return PREFIX + name


def list_deployments() -> list[str]:
    """Names of the deployments on the connected cluster, sorted."""
    actors = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        a["name"][len(PREFIX) :] for a in actors if a.get("namespace") == NAMESPACE and a["name"].startswith(PREFIX)
    )


_END = object()


def coalesce(items: Iterator[T], readers: ThreadPoolExecutor) -> Iterator[list[T]]:
    """The items of ``items`` in lists, each holding every item that was ready when the previous
    list had been sent: a thread of ``readers`` reads ``items`` while the caller sends. Each message
    through Ray costs a fixed fraction of a millisecond, so chunks that arrive together (an
    upstream's burst, tokens produced while the previous message was on its way) travel as one; a
    lone chunk goes at once. ``items`` runs and is closed in that thread; closing the result stops
    it at its next item. (A pool, since starting a thread per stream costs about a millisecond.)
    """
    ready: queue.SimpleQueue = queue.SimpleQueue()
    stopped = threading.Event()

    def read() -> None:
        try:
            for item in items:
                ready.put((item, None))
                if stopped.is_set():
                    break
        except BaseException as exc:  # raised again in the caller's thread
            ready.put((_END, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        ready.put((_END, None))

    readers.submit(read)
    try:
        while True:
            batch: list[T] = []
            item, exc = ready.get()
            while item is not _END:
                batch.append(item)
                try:
                    item, exc = ready.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
            if item is _END:
                if exc is not None:
                    raise exc
                return
    finally:
        stopped.set()


class RayWorker(Worker):
    """A worker as a Ray actor with ``capacity`` slots. It returns the slot of each request to its
    pool when the request ends, so a slot comes back even when the caller's process died
    mid-request.

    Every request method takes ``lease`` (the slot's id) and ``direct``: a direct request (routed
    by the client) takes a free slot or none, and then returns ``None`` (streams yield ``None``)
    meaning "busy, ask the pool"; a leased request (routed by the pool) waits for its slot.
    """

    def __init__(
        self,
        pool_name: str,
        index: int,
        capacity: int,
        backend: str,
        model_path: str,
        options: dict[str, Any],
        files: ModelFiles | None = None,
    ) -> None:
        files_error: ByzerLLMError | None = None
        if files is not None:  # the deploying machine's model, through the object store
            try:
                model_path = materialize(files, ray.get)
            except ByzerLLMError as exc:
                files_error = exc
        super().__init__(backend, model_path, options, init_error=files_error)
        self._pool_name = pool_name
        self._pool = None
        self._index = index
        self._slots = threading.BoundedSemaphore(capacity)
        # one reader per running stream; a cancelled stream's reader may outlive its slot briefly
        self._readers = ThreadPoolExecutor(2 * capacity + 4, thread_name_prefix="stream-reader")
        # Slot counts and token totals go to the pool from one thread, in order, a few requests'
        # worth per message: submitting an actor call costs about 0.5 ms, kept off the request path.
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._send_to_pool, name="pool-messages", daemon=True).start()
        # a restarted worker holds no request: the pool forgets the slots its previous process held,
        # whose last messages (a release within the last few milliseconds) died with it
        self._node_id = ray.get_runtime_context().get_node_id()
        self._tell_pool("start", index, os.getpid(), self._node_id)
        # slots of streams a caller reads from the engine itself: lease -> when to take it back
        self._local: dict[int | str, float] = {}
        self._closed_early: OrderedDict[int | str, None] = OrderedDict()  # closed before opened
        self._local_lock = threading.Lock()
        self._local_reaper: threading.Thread | None = None

    def node_name(self) -> str:
        """The IP address of this worker's Ray node (Ray's name of a node)."""
        return ray.util.get_node_ip_address()

    def ready(self) -> dict[str, Any]:
        """``Worker.ready`` plus ``node_id``: Ray's id of the node (several nodes can share an IP)."""
        return {**super().ready(), "node_id": ray.get_runtime_context().get_node_id()}

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

    def task_leased(self, task: str, request: Any, lease: int | str, direct: bool = False) -> Any:
        """A speech, transcription or image request (``Worker.run``) in a slot; None for busy."""
        if not self._admit(lease, direct):
            return None
        failed = True
        try:
            out = self.run(task, request)
            failed = False
            return out
        finally:
            self._release(lease, 0, 0, failed)

    def stream_leased(
        self, request: ChatRequest, lease: int | str, direct: bool = False
    ) -> Iterator[list[ChatChunk] | None]:
        """The chunks of a streamed chat in lists: each list holds the chunks that were ready
        together (see ``coalesce``); ``None`` alone for busy."""
        if not self._admit(lease, direct):
            yield None
            return
        last = None
        failed = False
        try:
            for batch in coalesce(self.stream(request), self._readers):
                last = batch[-1]
                yield batch
        except Exception:
            failed = True
            raise
        finally:
            done = last is not None and last.finish_reason is not None
            self._release(lease, last.input_tokens if done else 0, last.generated_tokens if done else 0, failed)

    def open_local(
        self, request: ChatRequest, lease: int | str, direct: bool, node_id: str
    ) -> dict[str, Any] | str | None:
        """A slot for a stream that a caller on node ``node_id`` reads from this worker's engine
        itself (no relay through this actor): the engine's client options, after the request's
        checks; ``None`` for busy (as ``stream_leased``); ``REMOTE`` when the caller is on another
        node or the backend has no engine. The caller ends it with ``close_local``; a slot not
        closed within the engine's timeout (and ``LOCAL_SLOT_MARGIN``) is returned here."""
        if node_id != self._node_id:
            return REMOTE
        options = self.local_endpoint(request)
        if options is None:
            return REMOTE
        if not self._admit(lease, direct):
            return None
        with self._local_lock:
            closed = self._closed_early.pop(lease, False) is None
            if not closed:
                self._local[lease] = time.monotonic() + float(options["timeout"]) + LOCAL_SLOT_MARGIN
            if self._local_reaper is None:
                self._local_reaper = threading.Thread(target=self._reap_local, name="local-slots", daemon=True)
                self._local_reaper.start()
        if closed:  # its caller gave up while this call was on its way: nobody reads the stream
            self._release(lease, 0, 0, True)
        return options

    def close_local(self, lease: int | str, prompt_tokens: int, completion_tokens: int, failed: bool) -> None:
        """The end of a local stream (``open_local``): its slot back, its tokens or failure counted.
        One that overtakes its ``open_local`` (calls to this actor run in several threads, in no set
        order) is remembered, and that ``open_local`` returns the slot at once."""
        with self._local_lock:
            held = self._local.pop(lease, None)
            if held is None:
                remember(self._closed_early, lease)
        if held is not None:
            self._release(lease, prompt_tokens, completion_tokens, failed)

    def _reap_local(self) -> None:
        while True:
            time.sleep(LOCAL_SLOT_MARGIN / 3)
            now = time.monotonic()
            with self._local_lock:
                expired = [lease for lease, until in self._local.items() if until < now]
            for lease in expired:
                log.warning("worker %s: local stream %s was not closed; its slot is returned", self._index, lease)
                self.close_local(lease, 0, 0, True)


class DeploymentPool:
    """The pool actor of one deployment (async: one event loop, no locks)."""

    def __init__(self, spec: DeploymentSpec, files: ModelFiles | None = None) -> None:
        self.spec = spec
        self.state = "starting"
        n, k = spec.num_workers, spec.worker_concurrency
        # the deployer's copy of the model files dies with the deployer: the pool keeps its own, so a
        # worker started again later (a lost node) still finds them
        self.files = None if files is None else keep_files(files)
        self.placement_group = None
        if spec.placement:
            self.placement_group = ray.util.placement_group(
                [worker_bundle(spec)] * n, strategy=spec.placement.upper(), name=actor_name(spec.name)
            )
        worker_cls = ray.remote(RayWorker)
        self.workers = [
            worker_cls.options(
                num_cpus=spec.cpus_per_worker,
                num_gpus=spec.gpus_per_worker,
                resources=spec.resources or None,
                # k running, leased requests waiting out a direct one, and ready/meta/cancel calls
                max_concurrency=2 * k + 4,
                max_restarts=-1,
                max_task_retries=0,
                namespace=NAMESPACE,
                scheduling_strategy=self._strategy(i),
            ).remote(actor_name(spec.name), i, k, spec.backend, spec.model_path, spec.options, self.files)
            for i in range(n)
        ]
        self.counts = SlotCounts(spec)
        self.leases: dict[int | str, int] = {}
        # leases granted by ``acquire`` whose request has not reached the worker: lease -> grant time
        self._unused: dict[int, float] = {}
        # leases taken back unused (lease -> worker), should their request reach the worker after all
        self._taken_back: OrderedDict[int, int] = OrderedDict()
        self._reaper: asyncio.Task | None = None
        self._early_releases: OrderedDict[str, None] = OrderedDict()
        self._lease_ids = itertools.count(1)
        self._cond = asyncio.Condition()
        self.meta_cache: dict[str, Any] | None = None
        # each worker's ``{"pid", "node", "node_id"}`` from its ``ready()``, None until it answered
        self.placement: list[dict[str, Any] | None] = [None] * n
        self._placing: set[asyncio.Task] = set()  # kept referenced while they run
        self.restarts = [0] * n
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS)

    def _strategy(self, idx: int) -> Any:
        if self.placement_group is not None:
            return PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=idx)
        return None

    def get_workers(self) -> list:
        return self.workers

    def routing(self) -> dict[str, Any]:
        """What a client needs to send requests straight to the workers."""
        return {
            "workers": self.workers,
            "state": self.state,
            "capacity": self.spec.worker_concurrency,
            "load_balance": self.spec.load_balance,
            # a caller on one of these nodes reads a worker's engine streams itself (``open_local``)
            "engine": bool((self.meta_cache or {}).get("engine")),
            "nodes": [p and p["node_id"] for p in self.placement],
        }

    async def wait_ready(self) -> dict[str, Any]:
        """Wait for every worker's backend; return worker 0's meta. Raises its start-up error."""
        infos = await asyncio.gather(*(w.ready.remote() for w in self.workers))
        self.placement = [_where(i) for i in infos]
        self.meta_cache = infos[0]["meta"]
        self.state = "running"
        return self.meta_cache

    def status(self) -> str:
        return self.state

    def info(self) -> dict[str, Any]:
        """Spec (secrets masked), state, meta, usage and ``workers``: ``[{"index", "pid", "node"}]``
        (``pid`` and ``node`` None until the worker is ready)."""
        spec = asdict(self.spec)
        spec["options"] = mask_secrets(spec["options"])
        return {
            "spec": spec,
            "state": self.state,
            "meta": self.meta_cache,
            "usage": self.counts.usage_totals(),
            "workers": self._workers(),
            "events": list(self.events),
        }

    def _workers(self) -> list[dict[str, Any]]:
        return [
            {"index": i, "pid": None, "node": None, "node_id": None, **(p or {}), "restarts": self.restarts[i]}
            for i, p in enumerate(self.placement)
        ]

    async def worker_pids(self) -> list[int]:
        infos = await asyncio.gather(*(w.ready.remote() for w in self.workers))
        return [i["pid"] for i in infos]

    def _count(self, lease: int | str, idx: int) -> None:
        self.leases[lease] = idx
        self.counts.take(idx)

    async def acquire(self) -> tuple[int, int]:
        """Lease a worker slot: ``(lease_id, worker_index)``; waits while every slot is busy, up to
        ``max_queue`` waiting requests (``QueueFullError`` beyond)."""
        if self.state == "starting":
            raise DeploymentStartingError(f"deployment {self.spec.name!r} is starting; retry shortly")
        async with self._cond:
            while True:
                if self.state == "stopping":
                    raise DeploymentUndeployedError(f"deployment {self.spec.name!r} is being undeployed")
                idx = self.counts.pick()
                if idx is not None:
                    break
                with self.counts.queued():
                    await self._cond.wait()
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
                remember(self._taken_back, lease, idx)
                self.counts.give_back(idx)
                async with self._cond:
                    self._cond.notify()

    async def worker_started(self, idx: int, pid: int | None = None, node_id: str | None = None) -> None:
        """Worker ``idx`` (process ``pid`` on node ``node_id``) (re)started with every slot free: its
        earlier leases are void (their callers saw it die; returning them again is harmless)."""
        known = self.placement[idx]
        if known is not None and (known["pid"], known["node_id"]) == (pid, node_id):
            return  # the first start of a process the pool knows, told after its ready()
        for lease in [lease for lease, i in self.leases.items() if i == idx]:
            del self.leases[lease]
            self._unused.pop(lease, None)
        if self.counts.in_flight[idx]:
            self.counts.in_flight[idx] = 0
            async with self._cond:
                self._cond.notify_all()
        if known is not None:  # a restart: the new process may be on another node
            before = known
            self.placement[idx] = None
            self.restarts[idx] += 1
            task = asyncio.get_running_loop().create_task(self._place(idx, before))
            self._placing.add(task)
            task.add_done_callback(self._placing.discard)

    async def _place(self, idx: int, before: dict[str, Any]) -> None:
        """Ask worker ``idx`` where it runs once it is ready again (its pid and node stay None if it
        cannot start); the restart goes to ``events``."""
        event = {"time": time.time(), "worker": idx, "event": "restarted", "previous": before}
        try:
            info = await self.workers[idx].ready.remote()
        except Exception as exc:  # its start-up error: requests to it report it
            self.events.append({**event, "event": "restart failed", "error": type(exc).__name__})
            return
        self.placement[idx] = _where(info)
        self.events.append({**event, "now": self.placement[idx], "seconds": round(time.time() - event["time"], 3)})

    def use(self, lease: int, idx: int) -> None:
        """A leased request reached its worker: the lease is kept until its release. One taken back
        meanwhile (a caller slower than ``LEASE_USE_TIMEOUT``) is counted again, since it runs."""
        if self._unused.pop(lease, None) is None and self._taken_back.pop(lease, None) is not None:
            self.leases[lease] = idx
            self.counts.in_flight[idx] += 1

    async def apply(self, messages: list[tuple[str, tuple]]) -> None:
        """Messages from a worker, in order: ``("start", (idx, pid, node_id))`` when its process (re)starts, and
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

    async def release(
        self, lease: int, prompt_tokens: int = 0, completion_tokens: int = 0, failed: bool = False
    ) -> None:
        """Return a lease (idempotent: a lease returned twice is counted once); the worker adds its
        request's token counts (or a failure) to the totals in the same message, the caller a failure
        when the worker died."""
        self._unused.pop(lease, None)
        idx = self.leases.pop(lease, None)
        if idx is not None or (isinstance(lease, str) and lease not in self._early_releases):
            self.counts.add_usage(prompt_tokens, completion_tokens, failed)
        if idx is None:
            if isinstance(lease, str):  # a direct request's slot, returned before its claim arrived
                remember(self._early_releases, lease)
            return
        self.counts.give_back(idx)
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
        workers = self._workers()
        return {
            **self.counts.stat(),
            "workers_node": [w["node"] for w in workers],
            "workers_node_id": [w["node_id"] for w in workers],
            "workers_restarts": [w["restarts"] for w in workers],
            "events": list(self.events),
        }

    async def shutdown(self) -> None:
        """Stop taking requests and kill the workers; running requests end with an error."""
        self.state = "stopping"
        async with self._cond:
            self._cond.notify_all()
        for w in self.workers:
            ray.kill(w, no_restart=True)
        if self.placement_group is not None:
            ray.util.remove_placement_group(self.placement_group)
