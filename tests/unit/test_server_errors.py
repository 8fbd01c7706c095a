"""Status mapping of the server, with the client replaced at its boundary (no model needed)."""

import asyncio

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
