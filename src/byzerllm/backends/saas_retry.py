"""Retries, fallbacks and one total deadline for the requests of SaaS backends.

A request is tried on its primary model, then on each fallback model, each ``1 + max_retries``
times, until one answers, a failure is not retryable, or the total ``deadline`` (seconds) would be
passed. Retryable failures: HTTP 408, 409, 429, 5xx, timeouts, connection errors (also a
connection dropped before the first token) and malformed responses. Between two attempts the wait
is the provider's ``Retry-After`` (or ``retry-after-ms``) when it sent one, else exponential
backoff with full jitter (``uniform(0, min(max_backoff, backoff * 2**n))``, the AWS architecture
blog's "Exponential Backoff And Jitter"). A wait that would end after the deadline is not taken:
the last error is raised at once. Each attempt gets ``min(timeout, time left)``.

Nothing is retried once a token has been streamed: the caller already holds part of an answer,
and a second attempt would not continue it. The deadline also bounds a stream's whole body.

The provider's client is used with its own retries off (``max_retries=0``), so every attempt is
counted here and reported (``details["attempts"]``, and on the error raised).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import InvalidRequestError, UpstreamError

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class Target:
    """One model a request can go to: ``label`` (the model id, shown in errors and metadata) and
    ``client`` (the provider SDK's client for it)."""

    label: str
    client: Any


@dataclass
class RetryPolicy:
    """``max_retries`` per model, ``timeout`` seconds per attempt, ``deadline`` seconds in all,
    ``backoff`` (first backoff ceiling, seconds) and ``max_backoff`` (seconds)."""

    max_retries: int = 2
    timeout: float = 60.0
    deadline: float = 300.0
    backoff: float = 0.5
    max_backoff: float = 8.0

    @classmethod
    def from_options(cls, cfg: dict[str, Any]) -> RetryPolicy:
        """Read ``max_retries``, ``timeout``, ``deadline``, ``backoff``, ``max_backoff`` from deploy
        options; raise ``InvalidRequestError`` naming a bad one."""
        values: dict[str, Any] = {}
        for key, kind, low in (
            ("max_retries", int, 0),
            ("timeout", float, 0.001),
            ("deadline", float, 0.001),
            ("backoff", float, 0.0),
            ("max_backoff", float, 0.0),
        ):
            raw = cfg.get(key)
            if raw is None:
                continue
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise InvalidRequestError(
                    f"saas.{key} must be a number >= {low}, got {raw!r}", param=f"saas.{key}"
                ) from None
            if value < low or isinstance(raw, bool):
                raise InvalidRequestError(f"saas.{key} must be a number >= {low}, got {raw!r}", param=f"saas.{key}")
            values[key] = value
        return cls(**values)


@dataclass
class Failure:
    """A failed attempt as the retry loop sees it."""

    error: UpstreamError
    retryable: bool
    retry_after: float | None = None


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date,
    RFC 9110 section 10.2.3); None when absent or unreadable."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class Attempts:
    """The schedule of one request: its deadline, the attempts made and the waits between them."""

    def __init__(
        self,
        policy: RetryPolicy,
        targets: list[Target],
        classify: Callable[[BaseException, Target], Failure | None],
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.targets = targets
        self.classify = classify
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.start = time.monotonic()
        self.end = self.start + policy.deadline
        self.count = 0

    def left(self) -> float:
        return self.end - time.monotonic()

    def details(self, target: Target) -> dict[str, Any]:
        return {"model": target.label, "attempts": self.count}

    def plan(self) -> Iterator[tuple[Target, float]]:
        """``(target, attempt timeout)`` for each attempt to make; the caller reports each failure
        with ``failed`` (which sleeps before the next attempt or raises)."""
        for target in self.targets:
            for n in range(self.policy.max_retries + 1):
                left = self.left()
                if left <= 0:
                    return
                self.count += 1
                self._n = n
                yield target, min(self.policy.timeout, left)

    def failed(self, exc: BaseException, target: Target, last_of_target: bool) -> UpstreamError:
        """Classify ``exc``; raise its error when final, else wait and return it (the last error)."""
        failure = self.classify(exc, target)
        if failure is None:  # not a provider failure (a bug, a cancellation): raised as it is
            raise exc
        error = failure.error
        error.details["attempts"] = error.attempts = self.count
        if not failure.retryable:
            raise error from None
        if last_of_target:  # the next model (if any) is tried at once
            return error
        wait = failure.retry_after
        if wait is None:
            wait = self.rng.uniform(0, min(self.policy.max_backoff, self.policy.backoff * 2**self._n))
        if wait >= self.left():
            raise self.exhausted(error, waited=wait) from None
        self.sleep(wait)
        return error

    def exhausted(self, error: UpstreamError | None, waited: float | None = None) -> UpstreamError:
        """The error for a request that ran out of attempts or time: the last upstream error, with
        what was tried added to its message."""
        spent = time.monotonic() - self.start
        if error is None:
            return UpstreamError(
                f"no attempt fitted in the deadline of {self.policy.deadline:g}s", status=504, attempts=self.count
            )
        if waited is not None:
            why = f"; waiting {waited:.3g}s more would pass the deadline of {self.policy.deadline:g}s"
        elif self.left() <= 0:
            why = f"; deadline of {self.policy.deadline:g}s reached"
        else:
            why = ""
        tried = ", ".join(t.label for t in self.targets)
        message = f"{error.message} (gave up after {self.count} attempt(s) in {spent:.2f}s on {tried}{why})"
        return UpstreamError(message, **{**error.details, "attempts": self.count})


def call(attempts: Attempts, fn: Callable[[Target, float], T]) -> tuple[T, Target]:
    """Run ``fn(target, timeout)`` under ``attempts``; return its result and the target that
    answered, or raise the final ``UpstreamError``."""
    last: UpstreamError | None = None
    per = attempts.policy.max_retries + 1
    for target, timeout in attempts.plan():
        try:
            return fn(target, timeout), target
        except Exception as exc:
            last = attempts.failed(exc, target, attempts._n == per - 1)
    raise attempts.exhausted(last) from None


def stream(
    attempts: Attempts, fn: Callable[[Target, float], Iterator[T]], started: Callable[[T], bool] = lambda _: True
) -> Iterator[tuple[T, Target]]:
    """Yield ``(item, target)`` from ``fn(target, timeout)`` under ``attempts``. Once an item for
    which ``started(item)`` is true was yielded, a failure is raised, never retried; past the
    deadline the stream ends with an ``UpstreamError`` (status 504)."""
    last: UpstreamError | None = None
    per = attempts.policy.max_retries + 1
    for target, timeout in attempts.plan():
        sent = False
        try:
            for item in fn(target, timeout):
                if attempts.left() <= 0:
                    raise UpstreamError(
                        f"{target.label} did not finish within the deadline of {attempts.policy.deadline:g}s",
                        status=504,
                        attempts=attempts.count,
                        model=target.label,
                        deadline=True,
                    )
                sent = sent or started(item)
                yield item, target
            return
        except Exception as exc:
            if isinstance(exc, UpstreamError) and exc.details.get("deadline"):
                raise
            if sent:
                failure = attempts.classify(exc, target)
                if failure is None:
                    raise
                error = failure.error
                raise UpstreamError(
                    f"{error.message} (after part of the answer was streamed; not retried)",
                    **{**error.details, "attempts": attempts.count},
                ) from None
            last = attempts.failed(exc, target, attempts._n == per - 1)
    raise attempts.exhausted(last) from None
