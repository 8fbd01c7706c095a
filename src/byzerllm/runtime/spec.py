"""What a deployment is, independent of the runtime that runs it (Ray or in-process)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequestError

LOAD_BALANCE_STRATEGIES = ("lru", "round_robin", "least_busy", "random")
#: How a deployment's workers are placed across nodes (Ray placement group strategies PACK and
#: SPREAD, both best-effort: a worker whose node is lost starts again on any node with room).
PLACEMENTS = ("pack", "spread")


@dataclass
class DeploymentSpec:
    """What a deployment runs and on what resources. ``options`` are the backend's deploy
    options with ``backend.`` / ``saas.`` prefixes stripped."""

    name: str
    backend: str
    model_path: str
    pretrained_model_type: str = "custom/auto"
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    worker_concurrency: int = 1
    load_balance: str = "lru"
    max_queue: int = 1024
    options: dict[str, Any] = field(default_factory=dict)
    placement: str | None = None
    #: custom Ray resources each worker needs (e.g. ``{"gpu_node": 1}``): pins workers to the
    #: nodes that declare them (``byzerllm cluster join --resources``)
    resources: dict[str, float] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    def validate(self) -> None:
        """Raise ``InvalidRequestError`` naming the first bad field."""
        if not self.name or not isinstance(self.name, str):
            raise InvalidRequestError("udf_name (the deployment name) must be a non-empty string", param="udf_name")
        for fname, low in (("num_workers", 1), ("worker_concurrency", 1), ("max_queue", 0)):
            value = getattr(self, fname)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidRequestError(f"{fname} must be an integer >= {low}, got {value!r}", param=fname)
        for fname in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, fname)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InvalidRequestError(f"{fname} must be a number >= 0, got {value!r}", param=fname)
        if self.placement is not None and self.placement not in PLACEMENTS:
            raise InvalidRequestError(
                f"placement {self.placement!r} is unknown; accepted: {', '.join(PLACEMENTS)}", param="placement"
            )
        check_resources(self.resources)
        if self.load_balance not in LOAD_BALANCE_STRATEGIES:
            raise InvalidRequestError(
                f"load balance strategy {self.load_balance!r} is unknown; "
                f"accepted: {', '.join(LOAD_BALANCE_STRATEGIES)}",
                param="load_balance",
            )


def check_resources(resources: Any) -> dict[str, float]:
    """Return ``resources`` when it maps custom Ray resource names (not CPU or GPU, which have
    their own settings) to amounts > 0; raise ``InvalidRequestError`` (``param="resources"``)
    naming the bad entry otherwise."""
    if not isinstance(resources, dict):
        raise InvalidRequestError("resources must be a dict of resource name -> amount", param="resources")
    for res, amount in resources.items():
        if not isinstance(res, str) or not res or res in ("CPU", "GPU"):
            raise InvalidRequestError(
                f"resources: {res!r} is not a custom resource name (CPU and GPU have their own settings)",
                param="resources",
            )
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount <= 0:
            raise InvalidRequestError(f"resources[{res!r}] must be a number > 0, got {amount!r}", param="resources")
    return resources


_SECRET_WORDS = ("key", "token", "secret", "password", "authorization", "credential", "cookie")
# option names whose values are all secrets (HTTP headers carry Authorization and the like)
_SECRET_MAPS = ("extra_headers", "headers")
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]+):[^/@\s]+@")


def is_secret_key(key: str) -> bool:
    """Whether an option named ``key`` holds a secret (an API key, a token, a password, an
    Authorization header), by its name."""
    return any(w in key.lower() for w in _SECRET_WORDS)


def _masked(value: Any) -> Any:
    return f"***{str(value)[-4:]}" if value and isinstance(value, (str, int)) else value


def mask_secrets(options: Any) -> Any:
    """Options with every secret-looking value shown as its last 4 characters only, inside nested
    lists and objects too (e.g. the ``api_key`` of a fallback model); every value of a headers
    option masked; the password of a URL (``http://user:pass@proxy``) replaced by ``***``."""
    if isinstance(options, list):
        return [mask_secrets(v) for v in options]
    if isinstance(options, str):
        return _URL_PASSWORD.sub(r"\1:***@", options)
    if not isinstance(options, dict):
        return options
    out = {}
    for k, v in options.items():
        if is_secret_key(k):
            out[k] = _masked(v) if isinstance(v, (str, int)) else mask_secrets(v)
        elif k.lower() in _SECRET_MAPS and isinstance(v, dict):
            out[k] = {name: _masked(value) for name, value in v.items()}
        else:
            out[k] = mask_secrets(v)
    return out
