"""The interface every runtime implements: what the client calls, and nothing else.

Two runtimes exist: ``RayRuntime`` (deployments are named actor pools on a Ray cluster, found by
name from any process) and ``InProcessRuntime`` (deployments live in the caller's process, as
``SimpleByzerLLM`` uses them). Both take a ``DeploymentSpec``, count slots with ``SlotCounts`` and
raise the errors of ``byzerllm.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from ..types import ChatChunk, ChatRequest, ChatResponse
from .spec import DeploymentSpec


@runtime_checkable
class Runtime(Protocol):
    """Deployments and requests. Every method that takes a deployment ``name`` raises
    ``ModelNotFoundError`` (``param="model"``) when no deployment has that name."""

    def list_deployments(self) -> list[str]:
        """Names of the deployments, sorted."""
        ...

    def exists(self, name: str) -> bool: ...

    def deploy(
        self, spec: DeploymentSpec, timeout: float = 600.0, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Start ``spec.num_workers`` workers and wait until each loaded its backend (``timeout``
        seconds in all); ``on_progress(ready, total)`` as they do. Returns the model meta. Raises
        ``DeploymentExistsError``, ``DeploymentError`` or the backend's start-up error; a failed
        deploy leaves nothing behind."""
        ...

    def undeploy(self, name: str) -> None:
        """Remove a deployment; its running and queued requests end with ``DeploymentUndeployedError``."""
        ...

    def info(self, name: str) -> dict[str, Any]:
        """``{"spec", "state", "meta", "usage", "workers"}``: ``spec`` the ``DeploymentSpec`` as a dict
        with secrets in ``spec.options`` masked; ``state`` "starting", "running" or "stopping";
        ``meta`` the backend's meta (None while starting); ``usage`` the token totals
        (``SlotCounts.usage_totals``); ``workers`` where each worker runs, ``[{"index", "pid",
        "node"}]`` (``node`` the host name in process, the Ray node's IP address on Ray; ``pid`` and
        ``node`` None until the worker is ready)."""
        ...

    def stat(self, name: str) -> dict[str, Any]:
        """Counts in the shape of ``SlotCounts.stat`` (docs/deployment.md defines each)."""
        ...

    def meta(self, name: str) -> dict[str, Any]:
        """The model meta of ``get_meta()``, with ``backend`` and ``model_deploy_type`` filled in."""
        ...

    def abort(self, name: str, request_id: str) -> None:
        """Stop request ``request_id`` at its next token, on whichever worker runs it."""
        ...

    def chat(self, name: str, request: ChatRequest) -> ChatResponse: ...

    def stream(self, name: str, request: ChatRequest) -> Iterator[ChatChunk]: ...

    def embed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]:
        """One vector per text and the input token count."""
        ...

    def rerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]:
        """One score per ``(query, passage)`` pair and the input token count."""
        ...

    def run(self, name: str, task: str, request: Any) -> Any:
        """One request of a unary task ("speech", "transcription", "image"; ``Worker.run``) with its
        typed request (``SpeechRequest``, ...); returns the typed result."""
        ...

    async def arun(self, name: str, task: str, request: Any) -> Any: ...

    async def achat(self, name: str, request: ChatRequest) -> ChatResponse: ...

    def astream(self, name: str, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def aembed(self, name: str, texts: list[str], query: bool = False) -> tuple[list[list[float]], int]: ...

    async def arerank(self, name: str, pairs: list[tuple[str, str]]) -> tuple[list[float], int]: ...
