"""``GET /console``: the web console, a single page (``console/index.html``) and its files
(``/console/assets/...``), shipped inside the package. No API key is needed for them (the ``Guard``
leaves ``/console`` open): they hold no cluster data; the page asks for the key and sends it with
every API call."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from ..responses import ErrorResponse
from .common import error_responses

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"

router = APIRouter()
# blob: and data: for recorded audio, uploaded images and generated pictures and speech
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
_MISSING = {404: {"model": ErrorResponse, "description": "No such file."}}
# StaticFiles answers a file's path safely (no way out of the folder), with ETag and 304s;
# check_dir=False: a missing folder is a 404 per request, not an error at start-up
_assets = StaticFiles(directory=CONSOLE_DIR / "assets", check_dir=False)


def _index() -> FileResponse:
    index = CONSOLE_DIR / "index.html"
    if not index.is_file():
        raise StarletteHTTPException(404, "the console is not installed (byzerllm/server/console/index.html)")
    # revalidated on each visit, so a new version of the page is seen at once
    # the page loads only its own files and talks only to this server; no other site may frame it
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    return FileResponse(index, media_type="text/html", headers=headers)


@router.get(
    "/console",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "The console's page."},
        **error_responses(),
        **_MISSING,
    },
)
async def console() -> FileResponse:
    return _index()


@router.get("/console/", include_in_schema=False)
async def console_slash() -> FileResponse:
    return _index()


@router.get(
    "/console/assets/{path:path}",
    response_class=FileResponse,
    responses={200: {"description": "A file of the console (script, style, image)."}, **error_responses(), **_MISSING},
)
async def console_asset(path: str, request: Request) -> Response:
    # normalised as StaticFiles normalises a mounted path; it refuses one that leads out of its folder
    return await _assets.get_response(os.path.normpath(os.path.join(*path.split("/"))), request.scope)
