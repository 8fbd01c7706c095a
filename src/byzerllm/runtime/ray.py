"""The Ray runtime: a deployment is a named pool of worker actors on a Ray cluster.

Layout on the cluster (namespace ``byzerllm``)::

    DeploymentPool  "deployment:<name>"   detached async actor: spec, leases, counts, routing
      Worker x N                           one backend each; restarted by Ray when its process dies

A request takes a lease from the pool (one actor round trip that picks a worker with the
load-balancing strategy), then talks to that worker directly, so streamed tokens make one hop.
The worker returns the lease when the request ends (the caller does too, for a worker that
died; returning is idempotent). When the worker of a request dies before the request produced
any output (a non-streamed request, or a stream before its first chunk), the request is sent
again on a new lease (a few times, with short pauses); a stream that already delivered text
ends with ``WorkerDiedError``. Ray restarts the dead worker's process and reloads its backend.
Counts (total requests, busy slots, last work time) live in the pool and survive a worker
restart.

Ray Serve was not used: its router picks replicas by power-of-two choices and exposes neither
per-replica counts nor the lru / round_robin strategies of the Byzer-LLM documents.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
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
from .spec import LOAD_BALANCE_STRATEGIES, DeploymentSpec, mask_secrets  # noqa: F401 - re-exported
from .worker import Worker

PREFIX = "deployment:"
# A request whose worker died before it produced output is sent again, after these pauses
# (seconds): Ray needs a moment to notice a dead process before it routes to its replacement.
RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0)
class RayWorker(Worker):
    """A worker as a Ray actor. It returns the lease of each request to its pool when the
    request ends, so a slot comes back even when the caller's process died mid-request."""

    def __init__(self, pool_name: str, backend: str, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(backend, model_path, options)
        self._pool_name = pool_name
        self._pool = None

    def _tell_pool(self, method: str, *args: Any) -> None:
        try:
            if self._pool is None:
                self._pool = ray.get_actor(self._pool_name, namespace=NAMESPACE)
            getattr(self._pool, method).remote(*args)
        except Exception:  # the pool is gone: the deployment was removed
            pass

    def _release(self, lease: int, *usage: Any) -> None:
        self._tell_pool("release", lease, *usage)

    def chat_leased(self, request: ChatRequest, lease: int) -> ChatResponse:
        usage = (0, 0, True)  # a failure unless it returns
        try:
            resp = self.chat(request)
            usage = (resp.input_tokens, resp.generated_tokens, False)
            return resp
        finally:
            self._release(lease, *usage)

    def embed_leased(self, texts: list[str], query: bool, lease: int) -> tuple[list[list[float]], int]:
        try:
            return self.embed(texts, query)
        finally:
            self._release(lease)

    def rerank_leased(self, pairs: list[tuple[str, str]], lease: int) -> tuple[list[float], int]:
        try:
            return self.rerank(pairs)
        finally:
            self._release(lease)

    def stream_leased(self, request: ChatRequest, lease: int) -> Iterator[ChatChunk]:
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
                max_concurrency=k + 2,  # room for ready/meta/cancel while k requests run
                max_restarts=-1,
                max_task_retries=0,
                namespace=NAMESPACE,
            ).remote(_actor_name(spec.name), spec.backend, spec.model_path, spec.options)
            for _ in range(n)
        ]
        self.in_flight = [0] * n
        self.total_requests = [0] * n
        self.last_work = [time.time()] * n
        self.leases: dict[int, int] = {}
        self._lease_ids = itertools.count(1)
        self._rr = itertools.cycle(range(n))
        self._cond = asyncio.Condition()
        self.waiting = 0
        # token totals of the deployment's requests, as the backends report them (the provider's usage)
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "failed_requests": 0}
        self.meta_cache: dict[str, Any] | None = None

    def get_workers(self) -> list:
        return self.workers

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
        k = self.spec.worker_concurrency
        free = [i for i in range(len(self.workers)) if self.in_flight[i] < k]
        if not free:
            return None
        strategy = self.spec.load_balance
        if strategy == "round_robin":
            for _ in range(len(self.workers)):
                i = next(self._rr)
                if self.in_flight[i] < k:
                    return i
        if strategy == "least_busy":
            return min(free, key=lambda i: (self.in_flight[i], self.last_work[i]))
        if strategy == "random":
            return random.choice(free)
        return min(free, key=lambda i: self.last_work[i])  # lru

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
            self.leases[lease] = idx
            self.in_flight[idx] += 1
            self.total_requests[idx] += 1
            self.last_work[idx] = time.time()
            return lease, idx

    def usage_totals(self) -> dict[str, int]:
        """``prompt_tokens``, ``completion_tokens``, ``total_tokens`` and ``failed_requests``."""
        u = self.usage
        return {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}

    async def release(self, lease: int, prompt_tokens: int = 0, completion_tokens: int = 0,
                      failed: bool = False) -> None:
        """Return a lease (idempotent); the worker adds its request's token counts (or a failure) to
        the totals in the same message."""
        self.usage["prompt_tokens"] += prompt_tokens
        self.usage["completion_tokens"] += completion_tokens
        self.usage["failed_requests"] += int(failed)
        idx = self.leases.pop(lease, None)
        if idx is None:
            return
        self.in_flight[idx] -= 1
        self.last_work[idx] = time.time()
        async with self._cond:
            self._cond.notify()

    def stat(self) -> dict[str, Any]:
        """Counts in the shape of ``byzerllm stat`` (blog post 002)."""
        k = self.spec.worker_concurrency
        busy = sum(1 for c in self.in_flight if c > 0)
        now = time.time()
        return {
            "total_workers": len(self.workers),
            "busy_workers": busy,
            "idle_workers": len(self.workers) - busy,
            "load_balance_strategy": self.spec.load_balance,
            "total_requests": list(self.total_requests),
            "state": [k - c for c in self.in_flight],
            "worker_max_concurrency": k,
            "workers_last_work_time": [f"{now - t}s" for t in self.last_work],
            "queued_requests": self.waiting,
            **self.usage_totals(),
        }

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


class RayRuntime:
    """Client side of the Ray runtime: finds deployments by name and routes requests."""

    def __init__(self) -> None:
        self._handles: dict[str, tuple[Any, list]] = {}

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

    def _lookup(self, name: str, refresh: bool = False) -> tuple[Any, list]:
        if refresh or name not in self._handles:
            pool = self._pool(name)
            self._handles[name] = (pool, ray.get(pool.get_workers.remote()))
        return self._handles[name]

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
        except Exception:
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
        pool, _ = self._lookup(name)
        return ray.get(pool.info.remote())

    def stat(self, name: str) -> dict[str, Any]:
        pool, _ = self._lookup(name, refresh=True)
        return ray.get(pool.stat.remote())

    def worker_pids(self, name: str) -> list[int]:
        pool, _ = self._lookup(name)
        return ray.get(pool.worker_pids.remote())

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

    def _lease(self, name: str) -> tuple[Any, Any, int]:
        for attempt in (0, 1):
            pool, workers = self._lookup(name, refresh=attempt == 1)
            try:
                lease, idx = ray.get(pool.acquire.remote())
                return pool, workers[idx], lease
            except RayActorError:
                if attempt == 1:
                    raise self._failure(name, DeploymentUndeployedError(f"deployment {name!r} is gone")) from None
            except RayTaskError as exc:
                raise _unwrap(exc) from None
        raise AssertionError("unreachable")

    def _call(self, name: str, method: str, *args: Any) -> Any:
        """A unary worker call (``chat_leased``, ``embed_leased``, ``rerank_leased``) on a leased slot,
        sent again when its worker died (it produced no output, so a retry is safe)."""
        for attempt in range(len(RETRY_PAUSES) + 1):
            if attempt:
                time.sleep(RETRY_PAUSES[attempt - 1])
            pool, worker, lease = self._lease(name)
            try:
                return ray.get(getattr(worker, method).remote(*args, lease))  # the worker returned the lease
            except (RayTaskError, RayActorError) as exc:
                pool.release.remote(lease)  # its worker may have died holding it
                error = self._failure(name, exc)
                if _give_up(error, attempt):
                    raise error from None
            except BaseException:
                pool.release.remote(lease)
                raise
        raise AssertionError("unreachable")

    def chat(self, name: str, request: ChatRequest) -> ChatResponse:
        return self._call(name, "chat_leased", request)

    def embed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return self._call(name, "embed_leased", texts, query)

    def rerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return self._call(name, "rerank_leased", pairs)

    def stream(self, name: str, request: ChatRequest) -> Iterator[ChatChunk]:
        for attempt in range(len(RETRY_PAUSES) + 1):
            if attempt:
                time.sleep(RETRY_PAUSES[attempt - 1])
            pool, worker, lease = self._lease(name)
            finished = False
            started = False
            try:
                for ref in worker.stream_leased.options(num_returns="streaming").remote(request, lease):
                    chunk = ray.get(ref)
                    started = True
                    finished = chunk.finish_reason is not None
                    yield chunk
                return
            except (RayTaskError, RayActorError) as exc:
                finished = True
                error = self._failure(name, exc)
                if _give_up(error, attempt, started):
                    raise error from None
            finally:
                if not finished:  # the caller stopped reading: stop the generation too
                    worker.cancel.remote(request.request_id)
                pool.release.remote(lease)

    async def _alease(self, name: str) -> tuple[Any, Any, int]:
        pool, workers = self._lookup(name)
        try:
            lease, idx = await pool.acquire.remote()
        except RayActorError:
            pool, workers = self._lookup(name, refresh=True)
            lease, idx = await pool.acquire.remote()
        except RayTaskError as exc:
            raise _unwrap(exc) from None
        return pool, workers[idx], lease

    async def _acall(self, name: str, method: str, *args: Any) -> Any:
        """``_call`` for asyncio code."""
        for attempt in range(len(RETRY_PAUSES) + 1):
            if attempt:
                await asyncio.sleep(RETRY_PAUSES[attempt - 1])
            pool, worker, lease = await self._alease(name)
            try:
                return await getattr(worker, method).remote(*args, lease)
            except (RayTaskError, RayActorError) as exc:
                pool.release.remote(lease)
                error = await asyncio.to_thread(self._failure, name, exc)
                if _give_up(error, attempt):
                    raise error from None
            except BaseException:
                pool.release.remote(lease)
                raise
        raise AssertionError("unreachable")

    async def achat(self, name: str, request: ChatRequest) -> ChatResponse:
        return await self._acall(name, "chat_leased", request)

    async def aembed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return await self._acall(name, "embed_leased", texts, query)

    async def arerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return await self._acall(name, "rerank_leased", pairs)

    async def astream(self, name: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        for attempt in range(len(RETRY_PAUSES) + 1):
            if attempt:
                await asyncio.sleep(RETRY_PAUSES[attempt - 1])
            pool, worker, lease = await self._alease(name)
            finished = False
            started = False
            try:
                async for ref in worker.stream_leased.options(num_returns="streaming").remote(request, lease):
                    chunk = await ref
                    started = True
                    finished = chunk.finish_reason is not None
                    yield chunk
                return
            except (RayTaskError, RayActorError) as exc:
                finished = True
                error = await asyncio.to_thread(self._failure, name, exc)
                if _give_up(error, attempt, started):
                    raise error from None
            finally:
                if not finished:
                    worker.cancel.remote(request.request_id)
                pool.release.remote(lease)
