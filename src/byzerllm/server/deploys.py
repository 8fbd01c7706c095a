"""Deploys started through the server's API (``POST /v1/deployments``), each in a thread of its own.

The runtime lists the deployments it holds; this registry keeps what it cannot tell: how many
workers of a deploy in progress are ready (from the runtime's ``on_progress``), and the error of a
deploy that failed (the runtime leaves nothing of it behind), until it is deleted or deployed again.
``DeployClient`` is the part of the client API the deployment routes and the history sampler call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ByzerLLMError, DeploymentExistsError
from ..runtime.spec import DeploymentSpec

log = logging.getLogger("byzerllm.server")

# seconds a deploy started by the server may take to load its workers (``ByzerLLM.deploy``'s default)
DEPLOY_TIMEOUT = 600.0


@runtime_checkable
class DeployClient(Protocol):
    """What the deployment routes and the history sampler need from the server's client, besides
    ``ChatClient``; ``ByzerLLM`` and ``SimpleByzerLLM`` satisfy it. Arguments after the first are
    passed by keyword."""

    def list_deployments(self) -> list[str]:
        """The names of the deployments, sorted."""
        ...

    def deployment_info(self, udf_name: str) -> dict[str, Any]:
        """``Runtime.info``: ``{"spec", "state", "meta", "usage", "workers"}``."""
        ...

    def get_meta(self, model: str) -> dict[str, Any]:
        """The meta of a running deployment (tasks, input_modalities, options in effect...)."""
        ...

    def stat(self, model: str) -> dict[str, Any]:
        """``SlotCounts.stat``: worker counts, requests per worker, token totals."""
        ...

    def deploy_spec(
        self,
        model_path: str,
        pretrained_model_type: str,
        udf_name: str,
        infer_params: dict[str, Any],
        *,
        infer_backend: str | None = None,
        num_workers: int | None = None,
        worker_concurrency: int | None = None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
    ) -> DeploymentSpec:
        """The checked spec of a deploy (backend picked, options checked), touching no cluster."""
        ...

    def deploy(
        self,
        model_path: str,
        *,
        pretrained_model_type: str,
        udf_name: str,
        infer_params: dict[str, Any],
        timeout: float,
        on_progress: Callable[[int, int], None],
        infer_backend: str,
        num_workers: int,
        worker_concurrency: int,
        cpus_per_worker: float,
        gpus_per_worker: float,
    ) -> dict[str, Any]:
        """Deploy and wait until every worker is ready, calling ``on_progress(ready, total)``."""
        ...

    def undeploy(self, udf_name: str) -> None:
        """Remove a deployment; ``ModelNotFoundError`` when there is none of that name."""
        ...


@dataclass
class PendingDeploy:
    """A deploy started by this server that is not (or not yet) a running deployment.

    ``state``: "starting" while its thread runs, "stopping" once deleted while starting (it is
    removed when its thread ends), "failed" with ``error`` (the error's message). ``ready`` of
    ``total`` workers have loaded their backend."""

    spec: DeploymentSpec
    state: Literal["starting", "stopping", "failed"] = "starting"
    ready: int = 0
    total: int = 0
    error: str | None = None


class Deploys:
    """The deploys this server started and has not seen through, by deployment name (thread-safe)."""

    def __init__(self, timeout: float = DEPLOY_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._items: dict[str, PendingDeploy] = {}

    def get(self, name: str) -> PendingDeploy | None:
        """A copy of the deploy of ``name``, None when there is none."""
        with self._lock:
            item = self._items.get(name)
            return None if item is None else replace(item)

    def all(self) -> dict[str, PendingDeploy]:
        """Copies of every pending or failed deploy, by name."""
        with self._lock:
            return {name: replace(item) for name, item in self._items.items()}

    def start(self, llm: DeployClient, spec: DeploymentSpec, options: dict[str, Any]) -> PendingDeploy:
        """Deploy ``spec`` (checked by ``llm.deploy_spec``; ``options`` the deploy options as given)
        in a thread: ``llm.deploy`` with the spec's backend and resources. Replaces a failed deploy
        of the same name; raises ``DeploymentExistsError`` (409, ``param="name"``) while another
        is starting or stopping. Returns a copy of the new entry."""
        item = PendingDeploy(spec, total=spec.num_workers)
        with self._lock:
            current = self._items.get(spec.name)
            if current is not None and current.state != "failed":
                raise DeploymentExistsError(
                    f"deployment {spec.name!r} is {current.state}; wait until it is running or failed", param="name"
                )
            self._items[spec.name] = item
        threading.Thread(target=self._run, args=(llm, item, options), name=f"deploy-{spec.name}", daemon=True).start()
        return replace(item)

    def _run(self, llm: DeployClient, item: PendingDeploy, options: dict[str, Any]) -> None:
        spec = item.spec

        def progress(ready: int, total: int) -> None:
            with self._lock:
                item.ready, item.total = ready, total

        try:
            llm.deploy(
                spec.model_path,
                pretrained_model_type=spec.pretrained_model_type,
                udf_name=spec.name,
                infer_params=options,
                timeout=self.timeout,
                on_progress=progress,
                infer_backend=spec.backend,
                num_workers=spec.num_workers,
                worker_concurrency=spec.worker_concurrency,
                cpus_per_worker=spec.cpus_per_worker,
                gpus_per_worker=spec.gpus_per_worker,
            )
        except Exception as exc:
            if isinstance(exc, ByzerLLMError):
                message = str(exc)
                log.warning("deploy of %s failed: %s", spec.name, message)
            else:  # an engine's own error may hold paths or a traceback: its type only, the rest in the log
                message = f"{type(exc).__name__} (details in the server's log)"
                log.exception("deploy of %s failed", spec.name)
            with self._lock:
                if self._items.get(spec.name) is not item:
                    return
                if item.state == "stopping":  # deleted while it started: nothing is left
                    del self._items[spec.name]
                else:
                    item.state, item.error = "failed", message
            return
        with self._lock:
            stopped = item.state == "stopping"
            if self._items.get(spec.name) is item:
                del self._items[spec.name]
        if stopped:  # deleted while it started: remove what it deployed
            try:
                llm.undeploy(spec.name)
            except ByzerLLMError:
                pass

    def stop(self, name: str) -> PendingDeploy | None:
        """Forget a failed deploy of ``name``, or mark a starting one "stopping" (its deployment is
        removed when it is ready, or it just ends if it fails). Returns what it was (a copy), None
        when this registry has no deploy of that name."""
        with self._lock:
            item = self._items.get(name)
            if item is None:
                return None
            was = replace(item)
            if item.state == "failed":
                del self._items[name]
            else:
                item.state = "stopping"
            return was
