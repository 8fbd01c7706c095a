"""The server's sampler of deployment counters, for the console's charts.

Every ``interval`` seconds (2 by default) an asyncio task of the app reads ``stat`` of every
deployment, each in a thread (one that fails is skipped, the others are sampled), and keeps the
cumulative counters of the last ``size`` samples (300: ten minutes at 2 s) per deployment, oldest
first. A browser derives requests/s and tokens/s from two
consecutive points. The task starts and stops with the app (``create_app``'s lifespan).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from ..errors import ByzerLLMError

log = logging.getLogger("byzerllm.server")

INTERVAL = 2.0
SIZE = 300


def point(stat: dict[str, Any], at: float) -> dict[str, Any]:
    """One sample of a ``stat`` dict taken at ``at`` (Unix seconds): ``time``, ``requests`` (requests
    given to the workers), ``prompt_tokens``, ``completion_tokens``, ``tokens``, ``failed`` (all
    cumulative since the deploy), ``busy_workers`` and ``queued`` (requests waiting for a slot) at
    that moment."""
    return {
        "time": at,
        "requests": sum(stat.get("total_requests") or []),
        "prompt_tokens": stat.get("prompt_tokens", 0),
        "completion_tokens": stat.get("completion_tokens", 0),
        "tokens": stat.get("total_tokens", 0),
        "failed": stat.get("failed_requests", 0),
        "busy_workers": stat.get("busy_workers", 0),
        "queued": stat.get("queued_requests", 0),
    }


class History:
    """The last ``size`` samples of every deployment of ``llm`` (a client with ``list_deployments``
    and ``stat``), one every ``interval`` seconds while ``run`` runs. Thread-safe."""

    def __init__(self, llm: Any, interval: float = INTERVAL, size: int = SIZE) -> None:
        self.llm, self.interval, self.size = llm, interval, size
        self._points: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._failing: set[str] = set()  # deployments whose stat failed last time (warned once)

    def points(self, name: str) -> list[dict[str, Any]] | None:
        """The samples of deployment ``name``, oldest first; None when it has none (never sampled, or
        not deployed)."""
        with self._lock:
            samples = self._points.get(name)
            return None if samples is None else list(samples)

    def forget(self, name: str) -> None:
        """Drop the samples of ``name`` (undeployed: a new deploy of the name starts afresh)."""
        with self._lock:
            self._points.pop(name, None)

    def _read(self, name: str) -> dict[str, Any] | None:
        """A sample of deployment ``name`` now; None when its ``stat`` fails (it is skipped this time)."""
        try:
            stat = self.llm.stat(name)
        except ByzerLLMError as exc:  # removed meanwhile, or its pool restarting
            log.debug("no sample of %s: %s", name, exc)
            return None
        except Exception:
            if name not in self._failing:
                log.warning("no sample of %s", name, exc_info=True)
            self._failing.add(name)
            return None
        self._failing.discard(name)
        return point(stat, time.time())

    async def sample(self) -> None:
        """Take one sample of every deployment, each ``stat`` in a thread of its own (a deployment
        whose workers are loading answers ``stat`` late on Ray: the others do not wait for it). A
        deployment no longer listed loses its samples. Raises when the deployments cannot be listed."""
        names = await asyncio.to_thread(self.llm.list_deployments)
        taken = await asyncio.gather(*(asyncio.to_thread(self._read, name) for name in names))
        with self._lock:
            for gone in set(self._points) - set(names):
                del self._points[gone]
            for name, sample in zip(names, taken, strict=True):
                if sample is not None:
                    self._points.setdefault(name, deque(maxlen=self.size)).append(sample)

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled (the client's calls run in threads, so
        a slow cluster never holds the event loop); a sample that takes longer than ``interval``
        delays the next rather than bunching them. Returns at once for a client without ``stat``."""
        if not callable(getattr(self.llm, "stat", None)) or not callable(getattr(self.llm, "list_deployments", None)):
            return
        loop = asyncio.get_running_loop()
        due = loop.time()
        unreachable = False
        while True:
            try:
                await self.sample()
                unreachable = False
            except Exception:  # the cluster is unreachable: try again at the next tick (warned once)
                if not unreachable:
                    log.warning("could not list the deployments to sample them", exc_info=True)
                unreachable = True
            due += self.interval
            now = loop.time()
            if due < now:
                due = now + self.interval
            await asyncio.sleep(due - now)
