"""The console's training jobs: ``GET /v1/jobs``, ``GET /v1/jobs/{name}`` (status, loss curve, log
tail), ``GET /v1/jobs/{name}/log``, ``POST /v1/jobs/{name}/cancel`` and ``.../resume``, over
``byzerllm.training.jobs`` (the cluster's job registry and each job's folder).

An unknown job is a 404 (``JobNotFoundError``); a cancel or resume the job's state does not allow
is a 400 naming ``name`` (``InvalidRequestError`` from ``jobs.py``)."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from .common import error_responses

# the lines of train.log in a job's detail
LOG_TAIL = 50

router = APIRouter()


def _jobs() -> ModuleType:
    # imported on first use: it brings in transformers (seconds), which the other routes never need
    from ...training import jobs

    return jobs


class JobStatus(BaseModel):
    """A job's status as ``jobs.job_status`` returns it: the fields named here, and whatever else
    its ``status.json`` and ``progress.json`` hold (timestamps, ``tokens``, ``started_step``...)."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str = Field(description="sft or pretrain")
    state: str = Field(description="pending, running, exporting, succeeded, failed or cancelled")
    dir: str = Field(description="the job's folder")
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = Field(None, description="seconds to the last step, at the current pace")
    outputs: dict[str, str] | None = Field(None, description="paths of adapter, model, gguf (once succeeded)")
    error: str | None = None


class JobList(BaseModel):
    data: list[JobStatus]


class LossPoint(BaseModel):
    step: int
    loss: float | None
    eval_loss: float | None


class JobDetail(JobStatus):
    """The status plus the losses logged so far and the last lines of ``train.log``."""

    loss_curve: list[LossPoint]
    log_tail: list[str]


class JobLog(BaseModel):
    lines: list[str] = Field(description="train.log's records as lines, oldest first")


@router.get("/v1/jobs", response_model=JobList, responses=error_responses(401, 500, 503))
async def list_jobs() -> JobList:
    jobs = _jobs()
    return JobList(data=await asyncio.to_thread(jobs.list_jobs))


def _detail(name: str) -> dict[str, Any]:
    jobs = _jobs()
    status = jobs.job_status(name)
    records = jobs.job_log(name)
    return {
        **status,
        "loss_curve": jobs.loss_curve(records),
        "log_tail": [jobs.format_record(r) for r in records[-LOG_TAIL:]],
    }


@router.get("/v1/jobs/{name}", response_model=JobDetail, responses=error_responses(401, 404, 500, 503))
async def job(name: str) -> JobDetail:
    return JobDetail(**await asyncio.to_thread(_detail, name))


@router.get("/v1/jobs/{name}/log", response_model=JobLog, responses=error_responses(400, 401, 404, 500, 503))
async def job_log(
    name: str, tail: Annotated[int, Query(ge=0, description="the last N lines; 0: all of them")] = 200
) -> JobLog:
    jobs = _jobs()
    records = await asyncio.to_thread(jobs.job_log, name)
    return JobLog(lines=[jobs.format_record(r) for r in (records[-tail:] if tail else records)])


@router.post("/v1/jobs/{name}/cancel", response_model=JobStatus, responses=error_responses(400, 401, 404, 500, 503))
async def cancel_job(name: str) -> JobStatus:
    """Asks the job to stop after its current step (with a checkpoint there) and answers at once; the
    job's state turns ``cancelled`` when it has stopped (poll ``GET /v1/jobs/{name}``)."""
    return JobStatus(**await asyncio.to_thread(_jobs().cancel_job, name, wait=False))


@router.post("/v1/jobs/{name}/resume", response_model=JobStatus, responses=error_responses(400, 401, 404, 500, 503))
async def resume_job(name: str) -> JobStatus:
    """Starts a failed or cancelled job again from its last checkpoint; answers at once (pending)."""
    return JobStatus(**await asyncio.to_thread(_jobs().resume_job, name))
