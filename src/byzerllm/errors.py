"""The exception hierarchy of byzerllm.

Every error is picklable (it crosses Ray between worker, pool and client) and carries an
HTTP status (``status_code``) and an OpenAI error ``type`` so the server can map it once.
Extra context travels as keyword attributes, e.g. ``ModelNotFoundError(..., available=[...])``.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[ByzerLLMError], message: str, details: dict[str, Any]) -> ByzerLLMError:
    return cls(message, **details)


class ByzerLLMError(Exception):
    """Base of every error raised by byzerllm. ``str(err)`` is the message for the user."""

    status_code: int = 500
    error_type: str = "server_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self):  # keeps details across pickling (Ray)
        return (_rebuild, (type(self), self.message, self.details))


class InvalidRequestError(ByzerLLMError):
    """A request or deploy argument is malformed; ``param`` names the field."""

    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    """A parameter the backend does not know; ``param`` names it, ``accepted`` lists known ones."""


class ModelNotFoundError(ByzerLLMError):
    """No deployment has this name; ``available`` lists the deployed names."""

    status_code = 404
    error_type = "not_found_error"


class JobNotFoundError(ByzerLLMError):
    """No training job has this name; ``available`` lists the jobs the cluster knows."""

    status_code = 404
    error_type = "not_found_error"


class ModelPathError(InvalidRequestError):
    """A model file or folder given to deploy does not exist or cannot be read; ``path``."""


class BackendNotFoundError(InvalidRequestError):
    """The inference backend is unknown or not installed; ``available`` lists installed ones."""


class DeploymentError(ByzerLLMError):
    """A deployment could not be created (resources, backend start-up failure)."""

    status_code = 500


class DeploymentExistsError(DeploymentError):
    """A deployment with this name already exists."""

    status_code = 409


class DeploymentUndeployedError(ByzerLLMError):
    """The deployment was removed while the request ran; the request was ended."""

    status_code = 503
    error_type = "service_unavailable"


class DeploymentStartingError(ByzerLLMError):
    """The deployment's workers are still loading; retry shortly."""

    status_code = 503
    error_type = "service_unavailable"


class QueueFullError(ByzerLLMError):
    """Every worker slot is busy and the deployment's queue is full (``max_queue``)."""

    status_code = 429
    error_type = "rate_limit_error"


class WorkerDiedError(ByzerLLMError):
    """The worker serving the request died; the pool replaces it, a retry will be served."""

    status_code = 503
    error_type = "service_unavailable"


class BackendError(ByzerLLMError):
    """The backend failed while serving a request; the message carries its reason."""

    status_code = 500


class OutputParseError(ByzerLLMError):
    """The model's text could not be parsed into the requested type; ``output`` is the text."""

    status_code = 502
    error_type = "output_parse_error"


class UpstreamError(ByzerLLMError):
    """A SaaS or remote model server failed: ``status`` (its HTTP status), ``provider``,
    ``request_id`` and ``upstream_message`` (its own words). Served as 429 for its rate limits,
    504 for its timeouts, 400 for a request it refused as malformed, 502 otherwise."""

    status_code = 502
    error_type = "upstream_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        status = details.get("status")
        self.status_code = {429: 429, 504: 504, 408: 504, 400: 400, 422: 400}.get(status, 502)


class ClusterNotFoundError(ByzerLLMError):
    """No Ray cluster could be reached."""

    status_code = 503
    error_type = "service_unavailable"


class RequestCancelledError(ByzerLLMError):
    """The request was cancelled by its caller."""

    status_code = 499
    error_type = "cancelled"


class RequestTimeoutError(ByzerLLMError):
    """The request did not finish within its deadline."""

    status_code = 504
    error_type = "timeout"


__all__ = [
    "BackendError",
    "BackendNotFoundError",
    "ByzerLLMError",
    "ClusterNotFoundError",
    "DeploymentError",
    "DeploymentExistsError",
    "DeploymentStartingError",
    "DeploymentUndeployedError",
    "InvalidRequestError",
    "JobNotFoundError",
    "ModelNotFoundError",
    "ModelPathError",
    "OutputParseError",
    "QueueFullError",
    "RequestCancelledError",
    "RequestTimeoutError",
    "UnsupportedParameterError",
    "UpstreamError",
    "WorkerDiedError",
]
