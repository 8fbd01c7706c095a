"""``/openapi.json`` of the server: each endpoint lists its response model, and OpenAI's error body
for each error status it answers; the bodies the server sends are exactly those models (checked
on the echo backend, in this process)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

import byzerllm
from byzerllm.errors import QueueFullError
from byzerllm.server import create_app
from byzerllm.server.responses import (
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
    CompletionResponse,
    CompletionStreamResponse,
    EmbeddingResponse,
    ErrorResponse,
    HealthResponse,
    ModelList,
    RerankResponse,
)

from .test_server_errors import FailingLLM

MODEL_ERRORS = (400, 401, 404, 413, 429, 500, 502, 503, 504)

# (method, path, response model, error statuses)
ENDPOINTS = [
    ("get", "/health", HealthResponse, ()),
    ("get", "/v1/models", ModelList, (401, 500, 503)),
    ("post", "/v1/chat/completions", ChatCompletionResponse, MODEL_ERRORS),
    ("post", "/v1/completions", CompletionResponse, MODEL_ERRORS),
    ("post", "/v1/embeddings", EmbeddingResponse, MODEL_ERRORS),
    ("post", "/v1/rerank", RerankResponse, MODEL_ERRORS),
]
STREAMS = [("/v1/chat/completions", ChatCompletionStreamResponse), ("/v1/completions", CompletionStreamResponse)]


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    app = create_app(FailingLLM(), api_keys=["k"])
    with TestClient(app) as http:
        served = http.get("/openapi.json")  # no key needed
    assert served.status_code == 200 and served.json() == app.openapi()
    return app.openapi()


@pytest.mark.parametrize(("method", "path", "model", "errors"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_each_endpoint_lists_its_response_model_and_its_error_statuses(schema, method, path, model, errors):
    responses = schema["paths"][path][method]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == ref(model)
    assert sorted(int(status) for status in responses if status not in ("200", "default")) == sorted(errors)
    for status in [*map(str, errors), "default"] if errors else []:
        assert responses[status]["content"] == {"application/json": {"schema": ref(ErrorResponse)}}, status
        assert responses[status]["description"]
    assert "422" not in responses  # validation errors are answered 400


@pytest.mark.parametrize(("path", "chunk"), STREAMS, ids=[s[0] for s in STREAMS])
def test_a_stream_lists_its_chunk_model(schema, path, chunk):
    events = schema["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert events["itemSchema"]["properties"]["data"]["contentSchema"] == ref(chunk)
    assert chunk.__name__ in schema["components"]["schemas"]


def test_metrics_is_text_and_lists_the_error_body_as_json(schema):
    responses = schema["paths"]["/metrics"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"text/plain"}
    assert responses["401"]["content"] == {"application/json": {"schema": ref(ErrorResponse)}}


def test_every_reference_resolves_and_the_error_body_is_openais(schema):
    components = schema["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [r for v in node.values() for r in refs(v)]
        return [r for v in node for r in refs(v)] if isinstance(node, list) else []

    missing = {r for r in refs(schema) if r.removeprefix("#/components/schemas/") not in components}
    assert missing == set()
    info = components["ErrorInfo"]
    assert set(info["properties"]) == set(info["required"]) == {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def echo():
    llm = byzerllm.SimpleByzerLLM("m").setup_infer_backend("echo")
    llm.deploy(model_path="", udf_name="m", infer_params={})
    with TestClient(create_app(llm, aliases={"alias": "m"})) as http:
        yield http
    llm.close()


USER = [{"role": "user", "content": "name three colours"}]
# the echo model answers with the user's words: this one is a valid call of the tool
CALL = [{"role": "user", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})}]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# (path, body, model of the body or of each streamed chunk)
BODIES = [
    ("/health", None, HealthResponse),
    ("/v1/models", None, ModelList),
    ("/v1/chat/completions", {"messages": USER}, ChatCompletionResponse),
    ("/v1/chat/completions", {"messages": CALL, "tools": [TOOL]}, ChatCompletionResponse),
    (
        "/v1/chat/completions",
        {"messages": USER, "stream": True, "stream_options": {"include_usage": True}},
        ChatCompletionStreamResponse,
    ),
    ("/v1/chat/completions", {"messages": CALL, "tools": [TOOL], "stream": True}, ChatCompletionStreamResponse),
    ("/v1/completions", {"prompt": "one two", "echo": True}, CompletionResponse),
    ("/v1/completions", {"prompt": "one two", "stream": True}, CompletionStreamResponse),
    ("/v1/embeddings", {"input": ["a cat", "a dog"]}, EmbeddingResponse),
    ("/v1/embeddings", {"input": "a cat", "encoding_format": "base64"}, EmbeddingResponse),
    ("/v1/rerank", {"query": "cats", "documents": ["a cat", {"text": "stocks"}], "top_n": 1}, RerankResponse),
    ("/v1/rerank", {"query": "cats", "documents": ["a cat"], "return_documents": False}, RerankResponse),
]


@pytest.mark.parametrize(("path", "body", "model"), BODIES, ids=[f"{b[0]} {json.dumps(b[1])[:40]}" for b in BODIES])
def test_the_bodies_sent_are_exactly_the_documented_models(echo, path, body, model):
    r = echo.get(path) if body is None else echo.post(path, json={"model": "alias", **body})
    assert r.status_code == 200, r.text
    if r.headers["content-type"].startswith("text/event-stream"):
        events = [e.removeprefix("data: ") for e in r.text.split("\n\n") if e]
        assert events[-1] == "[DONE]" and len(events) > 2
        sent = [json.loads(e) for e in events[:-1]]
    else:
        sent = [r.json()]
    for item in sent:  # nothing missing, nothing more: the model gives back what was sent
        assert model.model_validate(item).model_dump(mode="json") == item


def test_error_bodies_are_the_documented_error_model():
    app = create_app(FailingLLM(QueueFullError("busy")), api_keys=["k"], max_body_bytes=100)
    key = {"Authorization": "Bearer k"}
    chat = {"model": "m", "messages": USER}
    with TestClient(app) as http:
        answers = [
            http.get("/v1/models"),  # 401
            http.post("/v1/chat/completions", headers=key, json={**chat, "temperature": 9}),  # 400
            http.post("/v1/chat/completions", headers=key, json=chat),  # 429
            http.post("/v1/embeddings", headers=key, content=b"x" * 200),  # 413
            http.get("/v1/nothing", headers=key),  # 404
        ]
    assert [r.status_code for r in answers] == [401, 400, 429, 413, 404]
    for r in answers:
        assert ErrorResponse.model_validate(r.json()).model_dump() == r.json()
