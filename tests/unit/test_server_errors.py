"""Status mapping of the server, with the client replaced at its boundary (no model needed)."""

import asyncio
import contextlib
import json

import pytest
from fastapi.testclient import TestClient

from byzerllm.errors import DeploymentStartingError, QueueFullError, WorkerDiedError
from byzerllm.server import create_app


class FailingLLM:
    """Lists one deployment and fails every call with the error it was given."""

    def __init__(self, error=None, delay=0.0):
        self.error, self.delay = error, delay

    def list_deployments(self):
        return ["m"]

    async def async_chat_oai(self, *args, **kwargs):
        await asyncio.sleep(self.delay)
        raise self.error


def post(app, **body):
    with TestClient(app) as http:
        return http.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
        )


@pytest.mark.parametrize(
    "error,status,kind",
    [
        (DeploymentStartingError("deployment 'm' is starting"), 503, "service_unavailable"),
        (QueueFullError("busy"), 429, "rate_limit_error"),
        (WorkerDiedError("died"), 503, "service_unavailable"),
    ],
)
def test_errors_map_to_their_status(error, status, kind):
    r = post(create_app(FailingLLM(error)))
    assert r.status_code == status
    assert r.json() == {"error": {"message": str(error), "type": kind, "param": None, "code": None}}


def test_upstream_timeout_is_504():
    r = post(create_app(FailingLLM(RuntimeError("never"), delay=5), request_timeout=0.2))
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"


def test_api_keys_are_required_and_compared_exactly():
    app = create_app(FailingLLM(QueueFullError("x")), api_keys=["k1", "k2"])
    with TestClient(app) as http:
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer k3"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Basic k1"}).status_code == 401
        assert http.get("/health").status_code == 200


def test_validation_errors_are_400_naming_the_field():
    r = post(create_app(FailingLLM()), top_p=3)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_p"
    r = post(create_app(FailingLLM()), messages=[])
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


class RaisingBackendLLM:
    """The real client path down to a worker whose engine raises with the prompt in its message."""

    def list_deployments(self):
        return ["m"]

    async def async_chat_oai(self, messages, **kwargs):
        from byzerllm.params import build_chat_request
        from byzerllm.runtime.worker import Worker

        worker = Worker.__new__(Worker)  # the real worker around an engine that fails
        worker.init_error, worker._lock = None, contextlib.nullcontext()
        worker._cancelled, worker._active = set(), set()
        worker.backend = ExplodingBackend()
        return [worker.chat(build_chat_request(messages))]


class ExplodingBackend:
    name = "exploding"

    def check_request(self, request):
        pass

    def chat(self, request, cancelled):
        raise ValueError(f"cannot encode {request.messages[0]['content']!r} in /srv/engine/core.py")


def test_error_bodies_carry_no_traceback_path_or_prompt():
    r = post(create_app(RaisingBackendLLM()), messages=[{"role": "user", "content": "my private prompt"}])
    body = json.dumps(r.json())
    assert r.status_code == 500 and "ValueError" in body
    assert "private prompt" not in body and "/srv/engine" not in body and "Traceback" not in body
    raw = '{"model": "m", "messages": [{"role": "user", "content": "my private \\ud800 prompt"}]}'
    with TestClient(create_app(RaisingBackendLLM())) as http:
        r = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "private" not in r.text and "surrogate" in r.json()["error"]["message"]


def test_a_body_without_content_length_is_refused_at_the_size_limit():
    calls = []

    class CountingLLM(FailingLLM):
        async def async_chat_oai(self, *args, **kwargs):
            calls.append(1)
            raise QueueFullError("x")

    def chunks():  # a chunked body: no Content-Length
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    with TestClient(create_app(CountingLLM(), max_body_bytes=10_000)) as http:
        r = http.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "larger than 10000 bytes" in r.json()["error"]["message"]
        small = http.post(
            "/v1/chat/completions",
            content=iter([b'{"model": "m", "messages": []}']),
            headers={"Content-Type": "application/json"},
        )
        assert small.status_code == 400
    assert calls == []
