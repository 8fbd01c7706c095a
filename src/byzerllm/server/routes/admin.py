"""``GET /health`` (no API key needed) and ``GET /metrics`` (Prometheus' text format)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ..responses import HealthResponse
from ..state import ServerDep
from .common import error_responses

router = APIRouter()


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    response_description="Prometheus' text format: requests, errors, latency, time to first token, tokens.",
    responses=error_responses(401, json_route=False),
)
async def metrics(srv: ServerDep) -> PlainTextResponse:
    body, content_type = srv.metrics.render()
    return PlainTextResponse(body, media_type=content_type)
