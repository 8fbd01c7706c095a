"""`byzerllm serve` as a real HTTP server, hit by the official openai client and LangChain."""

from __future__ import annotations

import base64
import json
import struct
import time

import httpx
import openai
import pytest

from ..conftest import byzerllm_serve

pytestmark = pytest.mark.integration
KEY = "sk-test-key-1"
# the console's endpoints that start or stop things on the cluster, left out of the random fuzzing
CONSOLE_ACTIONS = ("/v1/deployments", "/v1/jobs", "/v1/rag", "/v1/storage")


@pytest.fixture(scope="module")
def emb_model(llm):
    name = "test_emb"
    llm.deploy(model_path="builtin:smollm2", udf_name=name, infer_params={"embedding": True, "max_model_len": 512})
    yield name
    llm.undeploy(name)


@pytest.fixture(scope="module")
def server(smollm2_chat, emb_model):
    args = ["--api_key", KEY, "--served_model_name", f"gpt-4o-mini={smollm2_chat}", "--request_timeout", "120"]
    with byzerllm_serve(*args) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


ASK = [{"role": "user", "content": "Name three colours."}]


def test_models_lists_the_real_deployments(client, smollm2_chat, emb_model):
    models = {m.id: m for m in client.models.list().data}
    assert {smollm2_chat, emb_model, "gpt-4o-mini"} <= set(models)
    assert models[emb_model].model_extra["kind"] == "embedding"
    assert models[smollm2_chat].model_extra["kind"] == "chat"


def test_chat_completion_with_usage(client, smollm2_chat):
    r = client.chat.completions.create(model=smollm2_chat, messages=ASK, max_tokens=12, temperature=0.5, seed=3)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    alias = client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_completion_tokens=3)
    assert alias.model == "gpt-4o-mini" and alias.usage.completion_tokens <= 3


def test_stream_joins_to_the_non_stream_answer_and_ends_with_usage(client, smollm2_chat):
    whole = client.chat.completions.create(model=smollm2_chat, messages=ASK, max_tokens=30, seed=5)
    chunks = list(
        client.chat.completions.create(
            model=smollm2_chat, messages=ASK, max_tokens=30, seed=5, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].usage.total_tokens == whole.usage.total_tokens


async def test_async_client(server, smollm2_chat):
    aclient = openai.AsyncOpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    r = await aclient.chat.completions.create(model=smollm2_chat, messages=ASK, max_tokens=8)
    assert r.choices[0].message.content
    pieces = [
        c.choices[0].delta.content or ""
        async for c in await aclient.chat.completions.create(
            model=smollm2_chat, messages=ASK, max_tokens=8, stream=True
        )
        if c.choices
    ]
    assert "".join(pieces)
    await aclient.close()


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time",
        "parameters": {"type": "object", "properties": {}},
    },
}


def test_tools_non_stream_and_stream(client, smollm2_chat):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model=smollm2_chat, messages=msgs, tools=[WEATHER, TIME])
    assert r.choices[0].finish_reason == "tool_calls"
    [call] = r.choices[0].message.tool_calls
    assert call.function.name in ("get_weather", "get_time") and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        assert args["unit"] in ("celsius", "fahrenheit") and isinstance(args["city"], str)
    chunks = list(
        client.chat.completions.create(
            model=smollm2_chat,
            messages=msgs,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and all(d.function.name is None for d in deltas[1:])
    assert set(json.loads("".join(d.function.arguments or "" for d in deltas))) == {"city", "unit"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    follow = client.chat.completions.create(
        model=smollm2_chat,
        max_tokens=10,
        messages=[
            *msgs,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"},
        ],
    )
    assert follow.choices[0].finish_reason in ("stop", "length") and follow.usage.completion_tokens > 0
    assert follow.choices[0].message.role == "assistant" and isinstance(follow.choices[0].message.content, str)


def test_response_format_json_schema_and_json_object(client, smollm2_chat):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = client.chat.completions.create(
        model=smollm2_chat,
        max_tokens=80,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)
    # seeded: unseeded, the 135M model runs to max_tokens inside the JSON about half the time
    r = client.chat.completions.create(
        model=smollm2_chat,
        max_tokens=150,
        seed=0,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe a cat in JSON."}],
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_completions(client, smollm2_chat):
    r = client.completions.create(model=smollm2_chat, prompt="The capital of France is", max_tokens=5)
    assert r.object == "text_completion" and r.usage.completion_tokens <= 5
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(model=smollm2_chat, prompt="One, two, three,", max_tokens=5, stream=True)
        if c.choices
    )
    assert text


def test_embeddings_and_rerank(client, server, emb_model):
    r = client.embeddings.create(model=emb_model, input=["a cat", "a dog"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 576 and r.usage.prompt_tokens > 0
    b64 = client.embeddings.create(model=emb_model, input="a cat", encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(r.data[0].embedding, abs=1e-5)
    resp = httpx.post(
        server + "/v1/rerank",
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "model": emb_model,
            "query": "where do cats sleep?",
            "top_n": 2,
            "documents": ["Cats sleep on sofas.", "The stock market fell.", {"text": "Kittens nap in boxes."}],
        },
    )
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert len(results) == 2 and results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert results[0]["index"] != 1  # the unrelated document does not win


def test_langchain_clients(server, smollm2_chat, emb_model):
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    chat = ChatOpenAI(base_url=server + "/v1", api_key=KEY, model=smollm2_chat, max_tokens=10, max_retries=0)
    assert isinstance(chat.invoke("Say hello.").content, str)
    assert "".join(c.content for c in chat.stream("Say hello."))
    emb = OpenAIEmbeddings(base_url=server + "/v1", api_key=KEY, model=emb_model, check_embedding_ctx_length=False)
    assert len(emb.embed_query("hello")) == 576 and len(emb.embed_documents(["a", "b"])) == 2


def error_of(exc: openai.APIStatusError) -> dict:
    return exc.response.json()["error"]


def test_errors_have_openai_shape_and_status(client, server, smollm2_chat):
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    assert e.value.status_code == 401 and error_of(e.value)["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=ASK)
    assert smollm2_chat in error_of(e.value)["message"] and error_of(e.value)["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=smollm2_chat, messages=ASK, n=2)
    assert error_of(e.value)["param"] == "n"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=smollm2_chat, messages=ASK, temperature=5)
    assert error_of(e.value)["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=smollm2_chat, messages=ASK, extra_body={"bogus": 1})
    assert error_of(e.value)["param"] == "bogus"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=smollm2_chat, input="x")  # a chat deployment
    assert "embedding=true" in error_of(e.value)["message"]
    big = httpx.post(
        server + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, content=b"x" * (9 * 1024 * 1024)
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    assert httpx.get(server + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404


def test_queue_full_is_429_and_disconnect_cancels(llm, server):
    name = "busy_srv"
    llm.setup_max_queue(0)
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    llm.setup_max_queue(1024)
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": name, "messages": ASK, "max_tokens": 2000, "ignore_eos": True, "stream": True}
    try:
        with (
            httpx.Client(timeout=60) as http,
            http.stream("POST", server + "/v1/chat/completions", headers=headers, json=body) as stream,
        ):
            lines = stream.iter_lines()  # kept: dropping it closes the connection
            assert next(lines).startswith("data: ")  # the generation is running
            busy = httpx.post(server + "/v1/chat/completions", headers=headers, json={**body, "stream": False})
            assert busy.status_code == 429 and busy.json()["error"]["type"] == "rate_limit_error"
        # the client went away: the worker stops generating and the slot is free again
        deadline = time.monotonic() + 15
        while llm.stat(name)["state"] != [1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert llm.stat(name)["state"] == [1]
    finally:
        llm.undeploy(name)


def test_metrics_and_health(server, client, smollm2_chat):
    client.chat.completions.create(model=smollm2_chat, messages=ASK, max_tokens=2)
    text = httpx.get(server + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    for name in (
        "byzerllm_requests_total",
        "byzerllm_request_errors_total",
        "byzerllm_request_latency_seconds",
        "byzerllm_time_to_first_token_seconds",
        "byzerllm_tokens_total",
    ):
        assert name in text
    assert f'byzerllm_tokens_total{{kind="completion",model="{smollm2_chat}"}}' in text
    assert httpx.get(server + "/health").json() == {"status": "ok"}


def test_openapi_schema_fuzzed_without_server_errors(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    failures, calls = [], []
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.method.upper() != "GET" and op.path.startswith(CONSOLE_ACTIONS):
            continue  # deploys, builds and job actions: their bad input is tested in test_console_api.py

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def fuzz(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {KEY}"}
            if isinstance(case.body, dict) and case.path.endswith("completions"):
                case.body.pop("stream", None)  # keep each case short
                case.body["max_tokens"] = 4
            response = case.call(timeout=60)
            calls.append((case.path, response.status_code))
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code, response.text[:300]))

        fuzz()
    assert not failures, failures
    paths = {p for p, _ in calls}
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/models"} <= paths
    assert any(status == 200 for _, status in calls)


def test_bad_input_is_answered_by_the_server_and_the_ray_workers_keep_serving(server, llm, smollm2_chat):
    """The fuzz list of tests/unit/test_server_fuzz.py through ``byzerllm serve`` and Ray workers."""
    from ..unit.test_server_fuzz import CASES

    user = [{"role": "user", "content": "hi"}]
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as http:
        for case, fields, status, param in CASES:
            r = http.post("/v1/chat/completions", json={"model": smollm2_chat, "messages": user, **fields})
            assert (r.status_code, r.json()["error"]["param"]) == (status, param), case

        def chunked():  # 12 MB without Content-Length
            yield b'{"model": "m", "messages": [{"role": "user", "content": "'
            for _ in range(12):
                yield b"x" * (1024 * 1024)
            yield b'"}]}'

        json_headers = {"Content-Type": "application/json"}
        assert http.post("/v1/chat/completions", content=chunked(), headers=json_headers).status_code == 413
        surrogate = b'{"model": "%s", "messages": [{"role": "user", "content": "a \\ud800 b"}]}' % smollm2_chat.encode()
        r = http.post("/v1/chat/completions", content=surrogate, headers=json_headers)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages.[0].content"
        seven_mb = [{"role": "user", "content": "word " * 1_400_000}]
        long_prompt = json.dumps({"model": smollm2_chat, "messages": seven_mb})
        start = time.monotonic()
        r = http.post("/v1/chat/completions", content=long_prompt.encode(), headers=json_headers)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages" and time.monotonic() - start < 10
        ok = http.post("/v1/chat/completions", json={"model": smollm2_chat, "messages": user, "max_tokens": 3})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] > 0
    assert llm.stat(smollm2_chat)["state"] == [1, 1]
