"""The in-process runtime: deployments live in the caller's process, no Ray.

A ``Runtime`` (runtime/base.py), as ``RayRuntime`` is, so ``SimpleByzerLLM`` is ``ByzerLLM`` with
this runtime. A deployment is ``num_workers`` ``Worker`` objects; a request takes a slot (at
most ``worker_concurrency`` per worker, the worker chosen by the deployment's load-balancing
strategy as on Ray), waits while every slot is busy, and is refused with ``QueueFullError``
beyond ``max_queue`` waiting requests, as on Ray. Deployments last as long as the runtime object (one per client).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from typing import Any

from ..errors import DeploymentExistsError, DeploymentUndeployedError, InvalidRequestError, ModelNotFoundError
from ..types import ChatChunk, ChatRequest, ChatResponse
from .slots import SlotCounts
from .spec import DeploymentSpec, mask_secrets
from .worker import Worker


class _Deployment:
    """The workers of one deployment with their slots and counts."""

    def __init__(
        self, spec: DeploymentSpec, workers: list[Worker], meta: dict[str, Any], placement: list[dict[str, Any]]
    ) -> None:
        self.spec = spec
        self.workers = workers
        self.meta = meta
        self.placement = placement  # each worker's {"index", "pid", "node"}
        self.counts = SlotCounts(spec)
        self.stopping = False
        self.cond = threading.Condition()

    def acquire(self) -> int:
        with self.cond:
            while True:
                if self.stopping:
                    raise DeploymentUndeployedError(f"deployment {self.spec.name!r} is being undeployed")
                idx = self.counts.pick()
                if idx is not None:
                    break
                with self.counts.queued():
                    self.cond.wait()
            self.counts.take(idx)
            return idx

    def release(self, idx: int, prompt: int = 0, completion: int = 0, failed: bool = False) -> None:
        with self.cond:
            self.counts.give_back(idx)
            self.counts.add_usage(prompt, completion, failed)
            self.cond.notify()


class InProcessRuntime:
    """Client side and host of in-process deployments."""

    def __init__(self) -> None:
        self._handles: dict[str, _Deployment] = {}
        self._starting: set[str] = set()  # names being deployed (their workers are loading)
        self._lock = threading.Lock()  # guards both; never held while a backend loads

    # --- deployments -----------------------------------------------------------------
    def _lookup(self, name: str, refresh: bool = False) -> _Deployment:
        try:
            return self._handles[name]
        except KeyError:
            deployed = self.list_deployments()
            raise ModelNotFoundError(
                f"model {name!r} is not deployed in this process; deployed: {', '.join(deployed) or 'none'}",
                param="model",
                available=deployed,
            ) from None

    def list_deployments(self) -> list[str]:
        return sorted(self._handles)

    def exists(self, name: str) -> bool:
        return name in self._handles

    def deploy(
        self, spec: DeploymentSpec, timeout: float = 600.0, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Build ``num_workers`` workers; return the model meta. Raises as ``RayRuntime.deploy``
        (``DeploymentExistsError``, also while a deploy of that name is loading; the backend's
        start-up error); CPU/GPU amounts are not checked. The deployment is listed once every worker
        is ready; meanwhile the other deployments are used, deployed and removed as usual."""
        spec.validate()
        if spec.placement or spec.resources:
            raise InvalidRequestError(
                "placement and resources_per_worker place workers on a Ray cluster's nodes; "
                "the in-process runtime runs them in this process",
                param="placement" if spec.placement else "resources",
            )
        with self._lock:
            if spec.name in self._handles or spec.name in self._starting:
                state = "is being deployed" if spec.name in self._starting else "already exists; undeploy it first"
                raise DeploymentExistsError(f"deployment {spec.name!r} {state}", param="udf_name")
            self._starting.add(spec.name)
        workers: list[Worker] = []
        placement: list[dict[str, Any]] = []
        try:
            for i in range(spec.num_workers):
                workers.append(Worker(spec.backend, spec.model_path, spec.options))
                ready = workers[-1].ready()
                meta = ready["meta"]
                placement.append({"index": i, "pid": ready["pid"], "node": ready["node"]})
                if on_progress:
                    on_progress(i + 1, spec.num_workers)
        except BaseException:
            with self._lock:
                self._starting.discard(spec.name)
            for w in workers:
                w.close()
            raise
        with self._lock:
            self._starting.discard(spec.name)
            self._handles[spec.name] = _Deployment(spec, workers, meta, placement)
        return meta

    def undeploy(self, name: str) -> None:
        """Remove a deployment; waiting requests end with ``DeploymentUndeployedError``."""
        with self._lock:
            dep = self._lookup(name)
            del self._handles[name]
        with dep.cond:
            dep.stopping = True
            dep.cond.notify_all()
        for w in dep.workers:
            w.close()

    def info(self, name: str) -> dict[str, Any]:
        dep = self._lookup(name)
        spec = asdict(dep.spec)
        spec["options"] = mask_secrets(spec["options"])
        return {
            "spec": spec,
            "state": "stopping" if dep.stopping else "running",
            "meta": dep.meta,
            "usage": dep.counts.usage_totals(),
            "workers": [dict(w) for w in dep.placement],
        }

    def stat(self, name: str) -> dict[str, Any]:
        dep = self._lookup(name)
        with dep.cond:
            return {**dep.counts.stat(), "workers_node": [w["node"] for w in dep.placement]}

    def meta(self, name: str) -> dict[str, Any]:
        dep = self._lookup(name)
        meta = dict(dep.meta or {})
        meta["model_deploy_type"] = "saas" if dep.spec.pretrained_model_type.startswith("saas/") else "proprietary"
        meta["backend"] = "inprocess/" + dep.spec.backend
        return meta

    def abort(self, name: str, request_id: str) -> None:
        """Cancel request ``request_id`` on whichever worker of ``name`` runs it."""
        for worker in self._lookup(name).workers:
            worker.cancel(request_id)

    # --- requests --------------------------------------------------------------------
    def _unary(self, name: str, call: Callable[[Worker], Any], usage: Callable[[Any], tuple[int, int]]) -> Any:
        dep = self._lookup(name)
        idx = dep.acquire()
        try:
            out = call(dep.workers[idx])
        except BaseException:
            dep.release(idx, failed=True)
            raise
        dep.release(idx, *usage(out))
        return out

    def chat(self, name: str, request: ChatRequest) -> ChatResponse:
        return self._unary(name, lambda w: w.chat(request), lambda r: (r.input_tokens, r.generated_tokens))

    def embed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return self._unary(name, lambda w: w.embed(texts, query), lambda r: (r[1], 0))

    def rerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return self._unary(name, lambda w: w.rerank(pairs), lambda r: (r[1], 0))

    def run(self, name: str, task: str, request: Any) -> Any:
        return self._unary(name, lambda w: w.run(task, request), lambda r: (0, 0))

    async def arun(self, name: str, task: str, request: Any) -> Any:
        return await asyncio.to_thread(self.run, name, task, request)

    def stream(self, name: str, request: ChatRequest) -> Iterator[ChatChunk]:
        dep = self._lookup(name)
        idx = dep.acquire()
        last = None
        failed = False
        try:
            for last in dep.workers[idx].stream(request):
                yield last
        except BaseException as exc:
            failed = not isinstance(exc, GeneratorExit)
            raise
        finally:
            done = last is not None and last.finish_reason is not None
            dep.release(idx, last.input_tokens if done else 0, last.generated_tokens if done else 0, failed)

    async def achat(self, name: str, request: ChatRequest) -> ChatResponse:
        return await asyncio.to_thread(self.chat, name, request)

    async def aembed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        return await asyncio.to_thread(self.embed, name, texts, query)

    async def arerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        return await asyncio.to_thread(self.rerank, name, pairs)

    async def astream(self, name: str, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """``stream`` for asyncio code: each chunk is read in a thread, so the event loop never
        waits on the backend."""
        chunks = self.stream(name, request)
        end = object()
        try:
            while (chunk := await asyncio.to_thread(next, chunks, end)) is not end:
                yield chunk
        finally:
            await asyncio.to_thread(chunks.close)
