"""``saas/openai`` deployments on Ray in front of real OpenAI-compatible servers: llama.cpp's own
server with the built-in model, and a small fault-injecting app."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from byzerllm.backends.models import resolve_model_path
from byzerllm.errors import UpstreamError

from ..conftest import free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` serving the built-in model."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "log.txt"
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", resolve_model_path("builtin:smollm2"),
                             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--model_alias",
                             "smollm2", "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    base = f"http://127.0.0.1:{port}/v1"
    wait_http(base + "/models", proc, lambda: log.read_text()[-3000:])
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def saas_chat(llm, llama_server):
    name = "saas_chat"
    llm.setup_num_workers(1)
    llm.deploy(model_path="", pretrained_model_type="saas/openai", udf_name=name,
               infer_params={"saas.base_url": llama_server, "saas.model": "smollm2", "saas.api_key": "sk-secret-1234",
                            "saas.json_schema_mode": "json_object", "saas.native_tools": False})
    yield name
    llm.undeploy(name)


ASK = [{"role": "user", "content": "Name three colours."}]


def test_chat_and_stream_through_a_saas_deployment(llm, saas_chat):
    [r] = llm.chat_oai(ASK, model=saas_chat, llm_config={"max_length": 12, "seed": 1, "temperature": 0})
    assert r.output and 0 < r.metadata["generated_tokens_count"] <= 12 and r.metadata["input_tokens_count"] > 5
    items = list(llm.stream_chat_oai(ASK, model=saas_chat, llm_config={"max_length": 12, "seed": 1,
                                                                       "temperature": 0}, delta_mode=True))
    assert "".join(t for t, _ in items)  # (llama.cpp's server reuses its cache: texts may differ by a token)
    # llama.cpp's server sends no usage in streams: the pieces are counted instead
    assert items[-1][1].finish_reason in ("stop", "length") and items[-1][1].generated_tokens_count > 0
    meta = llm.get_meta(model=saas_chat)
    assert meta["model_deploy_type"] == "saas" and meta["backend"] == "ray/openai"


def test_json_schema_and_tools_through_a_saas_deployment(llm, saas_chat):
    from ..doc_tools import Story, compute_date_range, compute_now

    [t] = llm.chat_oai([{"role": "user", "content": "Tell a story."}], model=saas_chat, response_class=Story,
                       llm_config={"max_length": 200})
    assert isinstance(t.value, Story) or t.metadata["reason"]
    [t] = llm.chat_oai([{"role": "user", "content": "最近三个月趋势"}], model=saas_chat,
                       tools=[compute_date_range, compute_now], execute_tool=True, llm_config={"max_length": 100})
    assert t.metadata["strategy"] == "constrained"
    assert t.values or t.metadata["reason"]


def test_api_keys_are_masked(llm, saas_chat):
    info = llm.deployment_info(saas_chat)
    assert info["spec"]["options"]["api_key"] == "***1234"
    assert "sk-secret" not in json.dumps(info) and "sk-secret" not in json.dumps(llm.get_meta(model=saas_chat))


class Faults:
    """An OpenAI-shaped upstream that fails on purpose and counts the attempts."""

    def __init__(self):
        self.attempts = 0
        self.mode = "ok"

    async def chat(self, request: Request):
        self.attempts += 1
        body = await request.json()
        self.last_body = body
        if self.mode == "429":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429,
                                headers={"Retry-After": "0.2", "x-request-id": "req-42"})
        if self.mode == "500":
            return JSONResponse({"error": {"message": "upstream broke", "type": "server_error"}}, status_code=500)
        if body.get("tools"):  # answer with a native tool call of the first tool
            name = body["tools"][0]["function"]["name"]
            arguments = json.dumps({"count": 3, "unit": "month"} if name == "compute_date_range" else {})
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_native_1", "type": "function", "function": {"name": name, "arguments": arguments}}]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": "ok"}, "stop"
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
            {"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


@pytest.fixture(scope="module")
def faults():
    state = Faults()
    app = Starlette(routes=[Route("/v1/chat/completions", state.chat, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    state.url = f"http://127.0.0.1:{port}/v1"
    yield state
    server.should_exit = True
    thread.join(timeout=10)


def test_upstream_errors_cross_ray_intact_after_retries(llm, faults):
    name = "faulty"
    llm.deploy(model_path="", pretrained_model_type="saas/openai", udf_name=name,
               infer_params={"saas.base_url": faults.url, "saas.model": "m", "saas.max_retries": 2})
    try:
        faults.mode, faults.attempts = "429", 0
        with pytest.raises(UpstreamError, match="answered 429: slow down") as err:
            llm.chat_oai(ASK, model=name)
        assert faults.attempts == 3  # the first try and 2 retries, each after Retry-After
        assert err.value.status == 429 and err.value.request_id == "req-42" and err.value.status_code == 429
        faults.mode, faults.attempts = "500", 0
        with pytest.raises(UpstreamError, match="upstream broke") as err:
            llm.chat_oai(ASK, model=name)
        assert err.value.status_code == 502 and faults.attempts == 3
        faults.mode = "ok"
        assert llm.chat_oai(ASK, model=name)[0].output == "ok"
        from ..doc_tools import compute_date_range, compute_now

        [t] = llm.chat_oai([{"role": "user", "content": "最近三个月趋势"}], model=name,
                           tools=[compute_date_range, compute_now], execute_tool=True)
        assert t.metadata["strategy"] == "native" and t.metadata["reason"] == ""
        assert [x["function"]["name"] for x in faults.last_body["tools"]] == ["compute_date_range", "compute_now"]
        assert faults.last_body["tool_choice"] == "required"
        assert t.metadata["tool_calls"][0]["id"] == "call_native_1" and len(t.values[0]) == 2
    finally:
        llm.undeploy(name)


def test_unknown_saas_type_and_missing_model_are_named(llm):
    from byzerllm.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="saas/openai"):
        llm.deploy(model_path="", pretrained_model_type="saas/nowhere", udf_name="x")
    with pytest.raises(InvalidRequestError, match="saas.model is required"):
        llm.deploy(model_path="", pretrained_model_type="saas/openai", udf_name="x")
