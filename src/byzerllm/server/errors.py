"""Error bodies of the server: OpenAI's ``{"error": {"message", "type", "param", "code"}}`` and
its ``param``, the request's own field path as OpenAI writes it (``messages.[0].content``)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

from .responses import ErrorInfo, ErrorResponse


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> ErrorResponse:
    return ErrorResponse(error=ErrorInfo(message=message, type=error_type, param=param, code=code))


def error_response(
    status_code: int, message: str, error_type: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, error_type, param, code).model_dump(), status_code=status_code)


# pydantic's names of union members in an error's location (``str``, ``list[str]``, a model class)
_UNION_MEMBER = re.compile(r"^([a-z-]+\[.*\]|str|int|float|bool|none|[A-Z]\w*)$")


def body_param(loc: Any) -> str | None:
    """OpenAI's ``param`` for a location in the request body: fields joined by dots, list indexes
    as ``[i]`` (OpenAI writes ``messages.[1].content``), without pydantic's union member names."""
    parts = [f"[{x}]" if isinstance(x, int) else str(x) for x in loc if x != "body"]
    parts = [p for p in parts if p.startswith("[") or not _UNION_MEMBER.match(p)]
    return ".".join(parts) or None


def request_param(param: str | None, path: str) -> str | None:
    """OpenAI's ``param`` for a client error's field (``conversations[0].content``, ``max_length``):
    the request's own field at ``path``, written as ``body_param`` writes it."""
    if not param:
        return param
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        param = re.sub(r"^conversations\[0\]\.content.*", "prompt", param)
    param = re.sub(r"^conversations\b", "messages", param)
    param = re.sub(r"^(max_length|max_new_tokens)$", "max_tokens", param)
    param = re.sub(r"^instruction$", "input", param)
    return re.sub(r"\.?\[(\d+)\]", r".[\1]", param)
