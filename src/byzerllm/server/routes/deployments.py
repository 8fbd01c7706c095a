"""The deployments of the cluster for the console: list, inspect, deploy, delete, their counters now
(``stat``) and over the last ten minutes (``history``), and the backends a deploy may name with
their options (``/v1/backends``). A deploy runs in a thread of the server (``server/deploys.py``);
the request returns at once with the deployment "starting"."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import sys
import time
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from ...backends import available_backends, get_backend_class
from ...backends.options import BackendOptions
from ...errors import (
    ByzerLLMError,
    DeploymentExistsError,
    DeploymentStartingError,
    InvalidRequestError,
    ModelNotFoundError,
)
from ...runtime.spec import DeploymentSpec, is_secret_key, mask_secrets
from ..deploys import DeployClient, PendingDeploy
from ..state import Server, ServerDep
from .common import error_responses

log = logging.getLogger("byzerllm.server")
router = APIRouter()

# a deployment's name: it is a path segment of these routes and part of the Ray actor's name
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


class WorkerPlacement(BaseModel):
    """Where one worker runs: its process id and its node (the host name, or the Ray node's IP
    address), both null until the worker is ready."""

    index: int
    pid: int | None = None
    node: str | None = None


class Progress(BaseModel):
    """Workers that loaded their backend, of all the deploy starts."""

    ready: int
    total: int


class Deployment(BaseModel):
    """One deployment: its spec, state, capabilities and workers. ``progress`` while a deploy started
    by this server is starting; ``error`` (the error's message) when it failed."""

    name: str
    state: Literal["starting", "running", "stopping", "failed"]
    backend: str
    model_path: str
    pretrained_model_type: str
    num_workers: int
    worker_concurrency: int
    cpus_per_worker: float
    gpus_per_worker: float
    tasks: list[str] = Field(description='what it serves: "chat", "embed", "rerank", "speech", ...')
    input_modalities: list[str] = Field(description="what a chat request may hold: text, image, audio")
    workers: list[WorkerPlacement]
    progress: Progress | None = None
    error: str | None = None
    created_at: float = Field(description="Unix seconds")


class DeploymentList(BaseModel):
    data: list[Deployment]


class DeploymentStat(BaseModel):
    """The counters of ``stat`` (docs/deployment.md defines each) and ``time``, when they were read
    (Unix seconds). Other keys of the runtime's ``stat`` are passed through."""

    model_config = ConfigDict(extra="allow")

    time: float
    total_workers: int
    busy_workers: int
    idle_workers: int
    queued_requests: int
    total_requests: list[int] = Field(description="requests given to each worker since the deploy")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    failed_requests: int


class DeploymentDetail(Deployment):
    """A deployment with its counters (null until it runs), its meta (null until it runs) and its
    deploy options in effect (defaults filled in, secrets masked)."""

    stat: DeploymentStat | None = None
    meta: dict[str, Any] | None = None
    options: dict[str, Any]


class DeployRequest(BaseModel):
    """``POST /v1/deployments``: what ``ByzerLLM.deploy`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="the deployment's name (udf_name)")
    model_path: str = Field(description="a GGUF file, a model folder, builtin:<name>, or '' for a SaaS model")
    backend: str | None = Field(None, description="the backend (GET /v1/backends); null: the model's default")
    pretrained_model_type: str = Field("custom/auto", description="custom/auto, or saas/<preset>")
    # bounds a form should keep to; the CLI and the Python client take larger numbers
    num_workers: int = Field(1, ge=1, le=64)
    worker_concurrency: int = Field(1, ge=1, le=1024, description="requests one worker serves at once")
    cpus_per_worker: float = Field(0.001, ge=0, le=1024)
    gpus_per_worker: float = Field(0, ge=0, le=64)
    options: dict[str, Any] = Field(default_factory=dict, description="the backend's deploy options (infer_params)")


class DeleteResponse(BaseModel):
    name: str
    deleted: Literal[True] = True


class HistoryPoint(BaseModel):
    """One sample: cumulative counters since the deploy, and the workers busy and requests queued at
    ``time`` (Unix seconds)."""

    time: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    failed: int
    busy_workers: int
    queued: int


class DeploymentHistory(BaseModel):
    interval: float = Field(description="seconds between two samples")
    points: list[HistoryPoint] = Field(description="oldest first, ten minutes at most")


class BackendOption(BaseModel):
    """One deploy option, from the backend's ``Options`` declaration (as ``byzerllm backends NAME``
    prints it). ``secret``: a key or token, masked wherever the deployment is shown."""

    name: str
    type: Literal["integer", "number", "boolean", "string", "array", "object"]
    nullable: bool
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    enum: list[Any] | None = None
    description: str
    secret: bool


class BackendInfo(BaseModel):
    name: str
    tasks: list[str]
    description: str
    options: list[BackendOption]


class BackendList(BaseModel):
    data: list[BackendInfo]


# --- deployments -------------------------------------------------------------------------------
@functools.cache
def _declared_tasks(backend: str) -> tuple[str, ...]:
    """The tasks a backend class declares (a deployment's own meta may refine them once it runs)."""
    try:
        return tuple(get_backend_class(backend).tasks)
    except Exception:
        return ()


def _deployment(
    spec: dict[str, Any],
    state: str,
    meta: dict[str, Any] | None,
    workers: list[dict[str, Any]] | None,
    pending: PendingDeploy | None,
) -> Deployment:
    """A ``Deployment`` from a runtime's ``info`` (or a pending deploy's spec), with the progress or
    the error of a deploy this server started."""
    meta = meta or {}
    progress = None
    if pending is not None and pending.state != "failed" and state in ("starting", "stopping"):
        progress = Progress(ready=pending.ready, total=pending.total)
    return Deployment(
        name=spec["name"],
        state=state,
        backend=spec["backend"],
        model_path=spec["model_path"],
        pretrained_model_type=spec["pretrained_model_type"],
        num_workers=spec["num_workers"],
        worker_concurrency=spec["worker_concurrency"],
        cpus_per_worker=spec["cpus_per_worker"],
        gpus_per_worker=spec["gpus_per_worker"],
        tasks=meta.get("tasks") or list(_declared_tasks(spec["backend"])),
        input_modalities=meta.get("input_modalities") or [],
        workers=workers or [{"index": i} for i in range(spec["num_workers"])],
        progress=progress,
        error=pending.error if pending is not None and state == "failed" else None,
        created_at=spec["created_at"],
    )


def _pending(pending: PendingDeploy) -> Deployment:
    """A deploy the runtime does not list (yet, or any more): starting, stopping or failed."""
    return _deployment(vars(pending.spec), pending.state, None, None, pending)


def _from_runtime(info: dict[str, Any], pending: PendingDeploy | None) -> Deployment:
    state = "stopping" if pending is not None and pending.state == "stopping" else info["state"]
    return _deployment(info["spec"], state, info.get("meta"), info.get("workers"), pending)


def _list(srv: Server) -> list[Deployment]:
    llm: DeployClient = srv.llm
    pending = srv.deploys.all()
    out: dict[str, Deployment] = {}
    for name in llm.list_deployments():
        try:
            info = llm.deployment_info(name)
        except ByzerLLMError:
            continue  # removed meanwhile
        out[name] = _from_runtime(info, pending.get(name))
    for name, item in pending.items():
        out.setdefault(name, _pending(item))
    return [out[name] for name in sorted(out)]


def _detail(srv: Server, name: str) -> DeploymentDetail:
    llm: DeployClient = srv.llm
    pending = srv.deploys.get(name)
    try:
        info = llm.deployment_info(name)
    except ModelNotFoundError:
        if pending is None:
            raise
        options = mask_secrets(get_backend_class(pending.spec.backend).check_options(pending.spec.options))
        return DeploymentDetail(**_pending(pending).model_dump(), options=options)
    deployment = _from_runtime(info, pending)
    stat = meta = None
    try:
        stat = DeploymentStat(**llm.stat(name), time=time.time())
        # get_meta is cached by the client: only a running deployment's is final
        meta = llm.get_meta(name) if info["state"] == "running" else None
    except ByzerLLMError:
        pass  # removed meanwhile, or its pool is restarting: shown without them
    options = (meta or info.get("meta") or {}).get("options") or info["spec"]["options"]
    return DeploymentDetail(**deployment.model_dump(), stat=stat, meta=meta, options=options)


@router.get("/v1/deployments", response_model=DeploymentList, responses=error_responses(401, 500, 503, 504))
async def list_deployments(srv: ServerDep) -> DeploymentList:
    """Every deployment, sorted by name, with the deploys this server started that are starting or
    failed."""
    return DeploymentList(data=await srv.timed(asyncio.to_thread(_list, srv)))


@router.get(
    "/v1/deployments/{name}", response_model=DeploymentDetail, responses=error_responses(401, 404, 500, 503, 504)
)
async def get_deployment(name: str, srv: ServerDep) -> DeploymentDetail:
    return await srv.timed(asyncio.to_thread(_detail, srv, name))


# the request's field for a param of ``deploy_spec``'s errors; any other param is a deploy option
_BODY_FIELDS = {"udf_name": "name", "infer_backend": "backend", **{f: f for f in DeployRequest.model_fields}}


def _checked_spec(llm: DeployClient, body: DeployRequest) -> DeploymentSpec:
    """``llm.deploy_spec`` of the request; its errors name the request's own fields (``backend``,
    ``options.<key>``)."""
    try:
        return llm.deploy_spec(
            body.model_path,
            pretrained_model_type=body.pretrained_model_type,
            udf_name=body.name,
            infer_params=body.options,
            infer_backend=body.backend,
            num_workers=body.num_workers,
            worker_concurrency=body.worker_concurrency,
            cpus_per_worker=body.cpus_per_worker,
            gpus_per_worker=body.gpus_per_worker,
        )
    except InvalidRequestError as exc:
        param = getattr(exc, "param", None)
        if param:
            param = _BODY_FIELDS.get(param, f"options.{param}")
        raise type(exc)(exc.message, **{**exc.details, "param": param}) from None


@router.post(
    "/v1/deployments",
    status_code=202,
    response_model=Deployment,
    responses=error_responses(400, 401, 409, 500, 503),
)
async def deploy(body: DeployRequest, srv: ServerDep) -> Deployment:
    """Start a deploy and answer at once (202) with the deployment "starting"; its workers load in
    a thread of the server. The backend and its options are checked first (400 naming the field),
    and the name must be free (409)."""
    llm: DeployClient = srv.llm
    spec = await asyncio.to_thread(_checked_spec, llm, body)
    if body.name in await asyncio.to_thread(llm.list_deployments):
        raise DeploymentExistsError(f"deployment {body.name!r} already exists; delete it first", param="name")
    srv.history.forget(body.name)
    return _pending(srv.deploys.start(llm, spec, body.options))


@router.delete("/v1/deployments/{name}", response_model=DeleteResponse, responses=error_responses(401, 404, 500, 503))
async def delete_deployment(name: str, srv: ServerDep) -> DeleteResponse:
    """Undeploy ``name``; forget it when its deploy failed; stop it when its deploy is starting (it
    shows "stopping" until its workers are gone)."""
    llm: DeployClient = srv.llm
    pending = srv.deploys.stop(name)
    if pending is None:
        await asyncio.to_thread(llm.undeploy, name)
    else:
        # starting: on Ray the starting pool is there, and removing it ends the deploy; failed: a
        # deployment of that name may run all the same (another client's deploy won the name)
        try:
            await asyncio.to_thread(llm.undeploy, name)
        except ModelNotFoundError:
            pass  # in process, the deploy's thread removes it once it is ready
    srv.history.forget(name)
    return DeleteResponse(name=name)


@router.get(
    "/v1/deployments/{name}/stat", response_model=DeploymentStat, responses=error_responses(401, 404, 500, 503, 504)
)
async def deployment_stat(name: str, srv: ServerDep) -> DeploymentStat:
    """The deployment's counters now (503 while a deploy of this server has no workers yet)."""
    llm: DeployClient = srv.llm
    try:
        stat = await srv.timed(asyncio.to_thread(llm.stat, name))
    except ModelNotFoundError:
        pending = srv.deploys.get(name)
        if pending is None:
            raise
        if pending.state == "failed":
            raise ModelNotFoundError(f"deployment {name!r} failed to start: {pending.error}", param="model") from None
        raise DeploymentStartingError(
            f"deployment {name!r} is {pending.state} ({pending.ready} of {pending.total} workers ready)"
        ) from None
    return DeploymentStat(**stat, time=time.time())


@router.get(
    "/v1/deployments/{name}/history",
    response_model=DeploymentHistory,
    responses=error_responses(401, 404, 500, 503),
)
async def deployment_history(name: str, srv: ServerDep) -> DeploymentHistory:
    """The samples of the last ten minutes (one every ``interval`` seconds), oldest first; none yet
    for a deployment sampled less than ``interval`` ago."""
    points = srv.history.points(name)
    if points is None:
        deployed = await asyncio.to_thread(srv.llm.list_deployments)
        if name not in deployed and srv.deploys.get(name) is None:
            raise ModelNotFoundError(
                f"model {name!r} is not deployed; deployed: {', '.join(deployed) or 'none'}",
                param="model",
                available=deployed,
            )
    return DeploymentHistory(interval=srv.history.interval, points=points or [])


# --- backends ----------------------------------------------------------------------------------
def backend_option(name: str, field: FieldInfo, schema: dict[str, Any]) -> BackendOption:
    """One option of an ``Options`` model from its field and its JSON schema property: the type is
    the schema's (a ``X | None`` is ``nullable``), bounds and accepted values are the type's own."""
    branches = schema.get("anyOf", [schema])
    nullable = any(b.get("type") == "null" for b in branches)
    main = next((b for b in branches if b.get("type") != "null"), {})
    kind = main.get("type") or ("string" if main.get("enum") else "object")
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    secret = kind == "string" and is_secret_key(name)
    return BackendOption(
        name=name,
        type=kind,
        nullable=nullable,
        default=mask_secrets({name: default})[name] if secret else default,
        minimum=main.get("minimum"),
        maximum=main.get("maximum"),
        exclusive_minimum=main.get("exclusiveMinimum"),
        exclusive_maximum=main.get("exclusiveMaximum"),
        enum=main.get("enum"),
        description=field.description or "",
        secret=secret,
    )


def backend_options(model: type[BackendOptions]) -> list[BackendOption]:
    """The options of a backend's ``Options`` model, in declaration order."""
    properties = model.model_json_schema().get("properties", {})
    return [backend_option(name, field, properties.get(name, {})) for name, field in model.model_fields.items()]


def _first_sentence(doc: str) -> str:
    """The first sentence of a docstring, on one line, without reST's double backquotes."""
    paragraph = doc.split("\n\n")[0].replace("\n", " ").replace("``", "")
    return re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]


@functools.cache
def _backends() -> tuple[BackendInfo, ...]:
    """Every importable backend, described by the first sentence of its module's docstring (imported
    once: the entry points do not change while the server runs)."""
    out = []
    for name in available_backends():
        try:
            cls = get_backend_class(name)
        except Exception as exc:  # not installed (its extra is missing), or broken
            log.info("backend %s left out of /v1/backends: %s", name, exc)
            continue
        description = _first_sentence(inspect.getdoc(sys.modules.get(cls.__module__)) or inspect.getdoc(cls) or "")
        out.append(
            BackendInfo(name=name, tasks=list(cls.tasks), description=description, options=backend_options(cls.Options))
        )
    return tuple(out)


@router.get("/v1/backends", response_model=BackendList, responses=error_responses(401, 500))
async def backends() -> BackendList:
    """The installed backends: the tasks each serves and its deploy options, as the deploy checks
    them."""
    return BackendList(data=list(await asyncio.to_thread(_backends)))
