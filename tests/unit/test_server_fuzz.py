"""Bad input to ``/v1/chat/completions``, each answered as OpenAI answers it: a 4xx whose ``param``
is the request's own field path (``messages.[0].content``), never a 5xx, and the server and the
worker go on serving. The deployment is the built-in model in this process (``SimpleByzerLLM``);
none of these inputs reaches generation."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

import byzerllm
from byzerllm.server import create_app

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

# (case, body fields over {"model": "m", "messages": USER}, status, param)
CASES = [
    ("no messages", {"messages": []}, 400, "messages"),
    ("a bad role", {"messages": [{"role": "bot", "content": "x"}]}, 400, "messages.[0].role"),
    ("content of a wrong type", {"messages": [{"role": "user", "content": 3}]}, 400, "messages.[0].content"),
    ("an unknown field", {"temperatur": 0.5}, 400, "temperatur"),
    ("max_tokens as a string", {"max_tokens": "8"}, 400, "max_tokens"),
    ("max_tokens over the context", {"max_tokens": 100_000}, 400, "max_tokens"),
    ("max_completion_tokens over the context", {"max_completion_tokens": 100_000}, 400, "max_completion_tokens"),
    ("temperature out of range", {"temperature": 3}, 400, "temperature"),
    ("temperature as a string", {"temperature": "0.5"}, 400, "temperature"),
    ("stream as a string", {"stream": "true"}, 400, "stream"),
    ("five stop strings", {"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    (
        "a tool name with a space",
        {"tools": [{**TOOL, "function": {"name": "get weather"}}]},
        400,
        "tools.[0].function.name",
    ),
    (
        "a tool name of 65 characters",
        {"tools": [{**TOOL, "function": {"name": "x" * 65}}]},
        400,
        "tools.[0].function.name",
    ),
    ("tool_choice required without tools", {"tool_choice": "required"}, 400, "tool_choice"),
    ("stream_options without stream", {"stream_options": {"include_usage": True}}, 400, "stream_options"),
    (
        "an invalid JSON schema",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}},
        400,
        "response_format.json_schema.schema",
    ),
    ("n above one", {"n": 2}, 400, "n"),
    ("continuing a user message", {"continue_final_message": True}, 400, "continue_final_message"),
]


@pytest.fixture(scope="module")
def http():
    llm = byzerllm.SimpleByzerLLM("m")
    llm.deploy(model_path="builtin:smollm2", pretrained_model_type="custom/auto", udf_name="m", infer_params={})
    with TestClient(create_app(llm, max_body_bytes=8 * 1024 * 1024), raise_server_exceptions=False) as client:
        yield client
    llm.close()


def post(http, **fields):
    return http.post("/v1/chat/completions", json={"model": "m", "messages": USER, **fields})


@pytest.mark.parametrize(("case", "fields", "status", "param"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_naming_the_openai_field(http, case, fields, status, param):
    r = post(http, **fields)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "Traceback" not in r.text and "byzerllm/" not in r.text


def raw(http, body: bytes | object, **headers):
    return http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json", **headers})


def test_bodies_that_are_not_json_too_large_or_not_unicode(http):
    bad_json = raw(http, b'{"model": "m", "messages": [')
    assert bad_json.status_code == 400 and bad_json.json()["error"]["param"] is None

    def chunked():  # 12 MB without Content-Length
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(12):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'

    assert raw(http, chunked()).status_code == 413
    surrogate = raw(http, b'{"model": "m", "messages": [{"role": "user", "content": "a \\ud800 b"}]}')
    assert surrogate.status_code == 400 and surrogate.json()["error"]["param"] == "messages.[0].content"
    long_prompt = json.dumps({"model": "m", "messages": [{"role": "user", "content": "word " * 1_400_000}]})
    r = raw(http, long_prompt.encode())  # 7 MB: under the size limit, over what the context can hold
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    assert "more than 4096 tokens can hold" in r.json()["error"]["message"]


def test_the_server_and_the_worker_serve_after_the_bad_input(http):
    for _, fields, _, _ in CASES:
        post(http, **fields)
    r = post(http, max_tokens=3, seed=1)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0
