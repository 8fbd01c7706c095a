"""The Ray runtime's client side: deployments by name, and the drivers that run request plans."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from ...errors import (
    ByzerLLMError,
    DeploymentError,
    DeploymentExistsError,
    DeploymentUndeployedError,
    ModelNotFoundError,
    WorkerDiedError,
)
from ...types import ChatChunk, ChatRequest, ChatResponse
from ..cluster import NAMESPACE, on_head
from ..spec import DeploymentSpec
from .actors import DeploymentPool, actor_name, list_deployments, worker_bundle
from .local_streams import LocalStream, local_streams
from .model_files import pack, to_ship
from .routing import (
    ACQUIRE,
    EMIT,
    END,
    FAILURE,
    GET,
    LOCAL,
    NEXT,
    REFRESH,
    ROUTE,
    SLEEP,
    Plan,
    Route,
    stream_plan,
    unary_plan,
    unwrap,
)

log = logging.getLogger("byzerllm.runtime")


def check_fit(spec: DeploymentSpec, nodes: list[dict[str, float]]) -> None:
    """Raise ``DeploymentError`` naming the resource (``param``: the setting that asks for it) when
    ``spec``'s workers cannot fit on the alive ``nodes`` (each node's total resources): a
    resource the cluster lacks or has too little of, or a worker bigger than every node."""
    bundle = worker_bundle(spec)
    if spec.cpus_per_worker == 0:
        bundle.pop("CPU", None)
    n = spec.num_workers
    for res, per in bundle.items():
        param = {"CPU": "cpus_per_worker", "GPU": "gpus_per_worker"}.get(res, "resources")
        have = sum(node.get(res, 0) for node in nodes)
        if have == 0 and res not in ("CPU", "GPU"):
            declared = sorted({r for node in nodes for r in node if not r.startswith(("node:", "accelerator_type"))})
            raise DeploymentError(
                f"deployment {spec.name!r} needs resource {res!r}, which no node of the cluster has "
                f"(declare it with `byzerllm cluster join --resources`); the nodes have: {', '.join(declared)}",
                param=param,
            )
        if per * n > have + 1e-9:
            raise DeploymentError(
                f"deployment {spec.name!r} needs {per * n:g} {res} ({n} workers x {per:g}); the cluster has {have:g}",
                param=param,
            )
    if nodes and not any(all(node.get(r, 0) + 1e-9 >= v for r, v in bundle.items()) for node in nodes):
        # the setting to blame: a resource no single node has enough of, else the custom ones
        short = next((r for r, v in bundle.items() if all(node.get(r, 0) + 1e-9 < v for node in nodes)), None)
        raise DeploymentError(
            f"deployment {spec.name!r}: no node has room for one worker ({bundle}); "
            f"the nodes have {[{r: node.get(r, 0) for r in bundle} for node in nodes]}",
            param={"CPU": "cpus_per_worker", "GPU": "gpus_per_worker"}.get(short or "", "resources"),
        )


def short_now(spec: DeploymentSpec, pending: int) -> str:
    """What the cluster has free now against what ``pending`` workers of ``spec`` still need."""
    avail = ray.available_resources()
    bundle = worker_bundle(spec)
    short = [f"{r}: {pending * v:g} needed, {avail.get(r, 0):g} free" for r, v in bundle.items()]
    return "; ".join(short)


class RayRuntime:
    """Client side of the Ray runtime (a ``Runtime``): finds deployments by name and routes requests."""

    def __init__(self) -> None:
        self._handles: dict[str, Route] = {}
        self._local = local_streams()

    # --- deployments -----------------------------------------------------------------
    def _pool(self, name: str):
        try:
            return ray.get_actor(actor_name(name), namespace=NAMESPACE)
        except ValueError:
            deployed = list_deployments()
            raise ModelNotFoundError(
                f"model {name!r} is not deployed; deployed: {', '.join(deployed) or 'none'}",
                param="model",
                available=deployed,
            ) from None

    def _lookup(self, name: str, refresh: bool = False) -> Route:
        route = None if refresh else self._handles.get(name)
        if route is None:
            pool = self._pool(name)
            route = Route(pool, ray.get(pool.routing.remote()))
            if route.running:  # a starting deployment is looked up again on the next request
                self._handles[name] = route
        return route

    def list_deployments(self) -> list[str]:
        return list_deployments()

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
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
        check_fit(spec, nodes)
        files = None
        local = to_ship(spec.model_path, len(nodes))
        if local is not None:
            files = pack(local, ray.put)
            log.info(
                "deployment %r: model files %s go to the workers through Ray's object store",
                spec.name,
                files.describe(),
            )
        pool = (
            ray.remote(DeploymentPool)
            .options(
                name=actor_name(spec.name),
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                max_restarts=0,
                max_concurrency=1000,
                # on the head, which outlives every other node
                scheduling_strategy=on_head(),
            )
            .remote(spec, files)
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
                    raise DeploymentError(
                        f"deployment {spec.name!r}: {len(pending)} of {len(workers)} workers "
                        f"not ready after {timeout:g}s ({short_now(spec, len(pending))})"
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
            raise unwrap(exc) from None

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
        if self._local.abort(request_id):  # a stream this process reads from an engine itself
            return  # (one another process reads is out of reach: see docs/deployment.md)
        refs = [w.cancel.remote(request_id) for w in self._lookup(name, refresh=True).workers]
        for ref in refs:
            try:
                ray.get(ref)
            except RayActorError:
                pass  # the worker died: its requests already ended

    def _failure(self, name: str, exc: BaseException) -> BaseException:
        """Map a Ray error during a request to the error the user should see."""
        exc = unwrap(exc)
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

    # --- the drivers of the request plans (routing.py) ----------------------------------
    def _do(self, op: str, arg: Any) -> Any:
        if op == GET:
            return ray.get(arg)
        if op == NEXT:
            if isinstance(arg, LocalStream):
                return arg.next_batch()
            ref = next(arg, None)
            return END if ref is None else ray.get(ref)
        if op == LOCAL:
            return self._local.open(*arg)
        if op == ROUTE:
            return self._lookup(arg)
        if op == REFRESH:
            return self._lookup(arg, refresh=True)
        if op == ACQUIRE:
            return ray.get(arg.pool.acquire.remote())
        if op == FAILURE:
            return self._failure(*arg)
        if op == SLEEP:
            return time.sleep(arg)
        raise ValueError(f"unknown effect {op!r}")

    async def _ado(self, op: str, arg: Any) -> Any:
        if op == GET:
            return await arg
        if op == NEXT:
            if isinstance(arg, LocalStream):
                return await arg.anext_batch()
            try:
                ref = await arg.__anext__()
            except StopAsyncIteration:
                return END
            # __anext__ returns once the value is here, so this get does not block; awaiting the ref
            # instead costs another trip through Ray's callback thread (~90 us a message, measured)
            return ray.get(ref)
        if op == LOCAL:
            return self._local.open(*arg)
        if op == ROUTE:
            return self._handles.get(arg) or await asyncio.to_thread(self._lookup, arg)
        if op == REFRESH:
            return await asyncio.to_thread(self._lookup, arg, True)
        if op == ACQUIRE:
            ref = arg.pool.acquire.remote()
            try:
                return await ref
            except asyncio.CancelledError:
                # the caller gave up: leave the queue now (a slot granted meanwhile goes back unused
                # after LEASE_USE_TIMEOUT)
                ray.cancel(ref)
                raise
        if op == FAILURE:
            return await asyncio.to_thread(self._failure, *arg)
        if op == SLEEP:
            return await asyncio.sleep(arg)
        raise ValueError(f"unknown effect {op!r}")

    def _drive(self, plan: Plan) -> Iterator[Any]:
        """Run ``plan`` to its end, yielding what it emits."""
        reply, error = None, None
        try:
            while True:
                op, arg = plan.throw(error) if error else plan.send(reply)
                reply, error = None, None
                if op == EMIT:
                    yield arg
                    continue
                try:
                    reply = self._do(op, arg)
                except (RayActorError, RayTaskError, ByzerLLMError) as exc:
                    error = exc
        except StopIteration:
            return
        finally:
            plan.close()

    async def _adrive(self, plan: Plan) -> AsyncIterator[Any]:
        """``_drive`` for asyncio code."""
        reply, error = None, None
        try:
            while True:
                op, arg = plan.throw(error) if error else plan.send(reply)
                reply, error = None, None
                if op == EMIT:
                    yield arg
                    continue
                try:
                    reply = await self._ado(op, arg)
                except (RayActorError, RayTaskError, ByzerLLMError) as exc:
                    error = exc
        except StopIteration:
            return
        finally:
            plan.close()

    def _call(self, name: str, method: str, *args: Any) -> Any:
        with closing(self._drive(unary_plan(name, method, *args))) as outs:
            return next(outs)

    async def _acall(self, name: str, method: str, *args: Any) -> Any:
        outs = self._adrive(unary_plan(name, method, *args))
        try:
            return await anext(outs)
        finally:
            await outs.aclose()

    def chat(self, name: str, request: ChatRequest) -> ChatResponse:
        return self._call(name, "chat_leased", request)

    def embed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return self._call(name, "embed_leased", texts, query)

    def rerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return self._call(name, "rerank_leased", pairs)

    def run(self, name: str, task: str, request: Any) -> Any:
        return self._call(name, "task_leased", task, request)

    async def arun(self, name: str, task: str, request: Any) -> Any:
        return await self._acall(name, "task_leased", task, request)

    def stream(self, name: str, request: ChatRequest) -> Iterator[ChatChunk]:
        return self._drive(stream_plan(name, request))

    async def achat(self, name: str, request: ChatRequest) -> ChatResponse:
        return await self._acall(name, "chat_leased", request)

    async def aembed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return await self._acall(name, "embed_leased", texts, query)

    async def arerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return await self._acall(name, "rerank_leased", pairs)

    def astream(self, name: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self._adrive(stream_plan(name, request))
