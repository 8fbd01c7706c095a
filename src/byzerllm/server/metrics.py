"""Prometheus metrics of the server: requests, errors, latency, time to first token, tokens."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One registry per app, so tests and several servers in a process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("byzerllm_requests", "Requests served", ["endpoint", "model"], registry=self.registry)
        self.errors = Counter(
            "byzerllm_request_errors", "Requests that ended in an error", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "byzerllm_request_latency_seconds",
            "Request latency",
            ["endpoint", "model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "byzerllm_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("byzerllm_tokens", "Tokens processed", ["model", "kind"], registry=self.registry)

    def done(self, endpoint: str, model: str, seconds: float, ttft: float | None, usage: dict[str, Any]) -> None:
        self.requests.labels(endpoint, model).inc()
        self.latency.labels(endpoint, model).observe(seconds)
        if ttft is not None:
            self.ttft.labels(model).observe(ttft)
        self.tokens.labels(model, "prompt").inc(usage.get("input_tokens_count", 0) or 0)
        self.tokens.labels(model, "completion").inc(usage.get("generated_tokens_count", 0) or 0)

    def error(self, endpoint: str, status: int) -> None:
        self.errors.labels(endpoint, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
