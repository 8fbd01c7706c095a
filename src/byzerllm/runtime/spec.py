"""What a deployment is, independent of the runtime that runs it (Ray or in-process)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequestError

LOAD_BALANCE_STRATEGIES = ("lru", "round_robin", "least_busy", "random")


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
        if self.load_balance not in LOAD_BALANCE_STRATEGIES:
            raise InvalidRequestError(
                f"load balance strategy {self.load_balance!r} is unknown; "
                f"accepted: {', '.join(LOAD_BALANCE_STRATEGIES)}",
                param="load_balance",
            )


def pick_worker(
    strategy: str, in_flight: list[int], last_work: list[float], capacity: int, rr: Iterator[int]
) -> int | None:
    """The index of the worker the next request goes to under a load-balancing strategy, among
    those with fewer than ``capacity`` requests in flight; ``None`` when every worker is full.
    ``rr`` is an endless cycle over the worker indexes (the round-robin position)."""
    free = [i for i, c in enumerate(in_flight) if c < capacity]
    if not free:
        return None
    if strategy == "round_robin":
        for _ in range(len(in_flight)):
            i = next(rr)
            if in_flight[i] < capacity:
                return i
    if strategy == "least_busy":
        return min(free, key=lambda i: (in_flight[i], last_work[i]))
    if strategy == "random":
        return random.choice(free)
    return min(free, key=lambda i: last_work[i])  # lru


def stat_counts(
    spec: DeploymentSpec,
    in_flight: list[int],
    total_requests: list[int],
    last_work: list[float],
    waiting: int,
    usage: dict[str, int],
) -> dict[str, Any]:
    """The ``stat`` dict of a deployment (the shape of ``byzerllm stat`` in Byzer-LLM's blog post 002),
    from the counts both runtimes keep. ``in_flight`` counts the requests assigned to each worker,
    running or waiting at the worker for a slot (a pool lease can meet a slot another client's direct
    request took a moment earlier), so ``state``, the free slots, is never below 0. docs/deployment.md
    defines each field."""
    k = spec.worker_concurrency
    busy = sum(1 for c in in_flight if c > 0)
    now = time.time()
    return {
        "total_workers": len(in_flight),
        "busy_workers": busy,
        "idle_workers": len(in_flight) - busy,
        "load_balance_strategy": spec.load_balance,
        "total_requests": list(total_requests),
        "state": [max(k - c, 0) for c in in_flight],
        "worker_max_concurrency": k,
        "workers_last_work_time": [f"{now - t}s" for t in last_work],
        "queued_requests": waiting,
        **usage,
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
    }


_SECRET_WORDS = ("key", "token", "secret", "password")


def mask_secrets(options: Any) -> Any:
    """Options with every secret-looking value shown as its last 4 characters only, inside nested
    lists and objects too (e.g. the ``api_key`` of a fallback model)."""
    if isinstance(options, list):
        return [mask_secrets(v) for v in options]
    if not isinstance(options, dict):
        return options
    return {
        k: (
            f"***{str(v)[-4:]}"
            if v and isinstance(v, (str, int)) and any(w in k.lower() for w in _SECRET_WORDS)
            else mask_secrets(v)
        )
        for k, v in options.items()
    }
