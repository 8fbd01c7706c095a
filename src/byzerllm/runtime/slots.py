"""Slot counting, one implementation for the Ray pool actor and the in-process runtime.

A deployment has ``num_workers`` workers of ``worker_concurrency`` slots each. ``SlotCounts`` keeps,
per worker, the requests assigned to it (``in_flight``), the requests it was given in all
(``total_requests``) and when it last started or ended one (``last_work``, for the lru strategy),
plus the requests waiting for a slot and the deployment's token totals. It holds no lock: the pool
actor calls it from its one event loop, the in-process runtime under its condition's lock.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import QueueFullError
from .spec import DeploymentSpec


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


class SlotCounts:
    """The slots and counts of one deployment (see the module docstring)."""

    def __init__(self, spec: DeploymentSpec) -> None:
        n = spec.num_workers
        self.spec = spec
        self.in_flight = [0] * n
        self.total_requests = [0] * n
        self.last_work = [time.time()] * n
        self.waiting = 0
        self._rr = itertools.cycle(range(n))
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "failed_requests": 0}

    def pick(self) -> int | None:
        """A worker with a free slot under the deployment's strategy; ``None`` when the request must
        wait. Raises ``QueueFullError`` when it would wait behind ``max_queue`` others."""
        idx = pick_worker(
            self.spec.load_balance, self.in_flight, self.last_work, self.spec.worker_concurrency, self._rr
        )
        if idx is None and self.waiting >= self.spec.max_queue:
            raise QueueFullError(
                f"deployment {self.spec.name!r} is busy: all {len(self.in_flight)} workers are serving and "
                f"{self.waiting} requests are queued (max_queue {self.spec.max_queue})"
            )
        return idx

    @contextmanager
    def queued(self) -> Iterator[None]:
        """Count a request as waiting for a slot while the block runs."""
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1

    def take(self, idx: int) -> None:
        """Count a request assigned to worker ``idx``."""
        self.in_flight[idx] += 1
        self.total_requests[idx] += 1
        self.last_work[idx] = time.time()

    def give_back(self, idx: int) -> None:
        """Worker ``idx``'s request ended (or its slot was taken back)."""
        self.in_flight[idx] -= 1
        self.last_work[idx] = time.time()

    def add_usage(self, prompt_tokens: int = 0, completion_tokens: int = 0, failed: bool = False) -> None:
        """Add a request's token counts (the provider's usage), or a failure, to the totals."""
        self.usage["prompt_tokens"] += prompt_tokens
        self.usage["completion_tokens"] += completion_tokens
        self.usage["failed_requests"] += int(failed)

    def usage_totals(self) -> dict[str, int]:
        """``prompt_tokens``, ``completion_tokens``, ``failed_requests`` and ``total_tokens``."""
        u = self.usage
        return {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}

    def stat(self) -> dict[str, Any]:
        """The ``stat`` dict (the shape of ``byzerllm stat`` in Byzer-LLM's blog post 002).
        ``in_flight`` counts the requests assigned to each worker, running or waiting at the worker
        for a slot (a pool lease can meet a slot another client's direct request took a moment
        earlier), so ``state``, the free slots, is never below 0. docs/deployment.md defines each
        field."""
        k = self.spec.worker_concurrency
        busy = sum(1 for c in self.in_flight if c > 0)
        now = time.time()
        return {
            "total_workers": len(self.in_flight),
            "busy_workers": busy,
            "idle_workers": len(self.in_flight) - busy,
            "load_balance_strategy": self.spec.load_balance,
            "total_requests": list(self.total_requests),
            "state": [max(k - c, 0) for c in self.in_flight],
            "worker_max_concurrency": k,
            "workers_last_work_time": [f"{now - t}s" for t in self.last_work],
            "queued_requests": self.waiting,
            **self.usage_totals(),
        }
