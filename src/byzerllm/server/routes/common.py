"""OpenAPI declarations the routers share: the error statuses a route answers (each with OpenAI's
error body) and the server-sent events of a stream."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..responses import ErrorResponse

# when each status is sent (docs/server.md lists the same)
_WHEN = {
    400: "A malformed request; `param` names the request's field.",
    401: "A missing or wrong API key.",
    404: "An unknown model (the message lists the deployed ones).",
    409: "The state of the named resource does not allow the request (e.g. a deployment of that name exists).",
    413: "A request body over the size limit.",
    429: "Every worker slot of the deployment is busy and its queue is full.",
    500: "An internal error, reported by its type only.",
    502: "An upstream (SaaS) server failed.",
    503: "The deployment is starting or being removed, or its worker died.",
    504: "No answer within the request timeout.",
}

# the statuses of a request to a deployment
MODEL_ERRORS = (400, 401, 404, 413, 429, 500, 502, 503, 504)


def error_responses(*codes: int, json_route: bool = True) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for the error statuses ``codes``, each with ``ErrorResponse``, and
    ``default`` for any other status: every error has that body. (A declared ``default`` also keeps
    FastAPI from listing a 422: validation errors are answered 400.) FastAPI lists a ``model``
    under the route's own media type, so a route that is not JSON (``json_route=False``) refers
    to the body's schema instead, which the JSON routes put in the components."""
    body: dict[str, Any] = (
        {"model": ErrorResponse}
        if json_route
        else {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    )
    out: dict[int | str, dict[str, Any]] = {code: {**body, "description": _WHEN[code]} for code in codes}
    out["default"] = {**body, "description": "Any other error."}
    return out


def event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """The ``text/event-stream`` content of a streamed response, described as FastAPI describes
    its own event streams: each event's ``data`` is a ``chunk`` as JSON (and the last is
    ``[DONE]``). The app's schema adds ``chunk`` to its components (``app.STREAM_CHUNKS``)."""
    data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{chunk.__name__}"},
        "description": f"a {chunk.__name__} as JSON, or [DONE] after the last one",
    }
    return {"text/event-stream": {"itemSchema": {"type": "object", "properties": {"data": data}, "required": ["data"]}}}
