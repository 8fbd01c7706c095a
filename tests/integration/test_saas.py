"""``saas/openai`` deployments on Ray in front of real OpenAI-compatible servers: llama.cpp's own
server with the built-in model, and a small fault-injecting app."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from byzerllm.backends.models import resolve_model_path
from byzerllm.errors import UpstreamError

from ..conftest import free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` serving the built-in model."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "log.txt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            resolve_model_path("builtin:smollm2"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--model_alias",
            "smollm2",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    base = f"http://127.0.0.1:{port}/v1"
    wait_http(base + "/models", proc, lambda: log.read_text()[-3000:])
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def saas_chat(llm, llama_server):
    name = "saas_chat"
    llm.setup_num_workers(1)
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name=name,
        infer_params={
            "saas.base_url": llama_server,
            "saas.model": "smollm2",
            "saas.api_key": "sk-secret-1234",
            "saas.json_schema_mode": "json_object",
            "saas.native_tools": False,
        },
    )
    yield name
    llm.undeploy(name)


ASK = [{"role": "user", "content": "Name three colours."}]


def test_chat_and_stream_through_a_saas_deployment(llm, saas_chat):
    [r] = llm.chat_oai(ASK, model=saas_chat, llm_config={"max_length": 12, "seed": 1, "temperature": 0})
    assert r.output and 0 < r.metadata["generated_tokens_count"] <= 12 and r.metadata["input_tokens_count"] > 5
    items = list(
        llm.stream_chat_oai(
            ASK, model=saas_chat, llm_config={"max_length": 12, "seed": 1, "temperature": 0}, delta_mode=True
        )
    )
    assert "".join(t for t, _ in items)  # (llama.cpp's server reuses its cache: texts may differ by a token)
    # llama.cpp's server sends no usage in streams: the pieces are counted instead
    assert items[-1][1].finish_reason in ("stop", "length") and items[-1][1].generated_tokens_count > 0
    meta = llm.get_meta(model=saas_chat)
    assert meta["model_deploy_type"] == "saas" and meta["backend"] == "ray/openai"


def test_json_schema_and_tools_through_a_saas_deployment(llm, saas_chat):
    from ..doc_tools import Story, compute_date_range, compute_now

    [t] = llm.chat_oai(
        [{"role": "user", "content": "Tell a story."}],
        model=saas_chat,
        response_class=Story,
        llm_config={"max_length": 200, "seed": 0},
    )
    # the server's grammar keeps the JSON valid; seeded, the story ends within max_length
    assert isinstance(t.value, Story) and t.metadata["reason"] == ""
    [t] = llm.chat_oai(
        [{"role": "user", "content": "最近三个月趋势"}],
        model=saas_chat,
        tools=[compute_date_range, compute_now],
        execute_tool=True,
        llm_config={"max_length": 100, "seed": 0},
    )
    assert t.metadata["strategy"] == "constrained"
    assert t.metadata["reason"] == "" and len(t.values) == 1


def test_api_keys_are_masked(llm, saas_chat):
    info = llm.deployment_info(saas_chat)
    assert info["spec"]["options"]["api_key"] == "***1234"
    assert "sk-secret" not in json.dumps(info) and "sk-secret" not in json.dumps(llm.get_meta(model=saas_chat))


def test_upstream_errors_cross_ray_intact_after_retries(llm, faults):
    name = "faulty"
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name=name,
        infer_params={"saas.base_url": faults.url, "saas.model": "m", "saas.max_retries": 2, "saas.backoff": 0.05},
    )
    try:
        faults.reset("429", retry_after="0.2")
        with pytest.raises(UpstreamError, match="answered 429: slow down") as err:
            llm.chat_oai(ASK, model=name)
        assert faults.attempts == 3  # the first try and 2 retries, each after Retry-After
        assert err.value.status == 429 and err.value.request_id == "req-42" and err.value.status_code == 429
        assert err.value.attempts == 3
        faults.reset("500")
        with pytest.raises(UpstreamError, match="upstream broke") as err:
            llm.chat_oai(ASK, model=name)
        assert err.value.status_code == 502 and faults.attempts == 3
        faults.reset("drop_after")
        with pytest.raises(UpstreamError, match="not retried") as err:
            list(llm.stream_chat_oai(ASK, model=name))
        assert faults.attempts == 1 and err.value.status == 502
        faults.reset("malformed")
        with pytest.raises(UpstreamError, match="malformed"):
            llm.chat_oai(ASK, model=name)
        assert faults.attempts == 3
        faults.reset("ok")
        [r] = llm.chat_oai(ASK, model=name)
        assert r.output == "ok" and r.metadata["attempts"] == 1 and r.metadata["model"] == "m"
        assert r.metadata["usage"]["total_tokens"] == 4
        from ..doc_tools import compute_date_range, compute_now

        [t] = llm.chat_oai(
            [{"role": "user", "content": "最近三个月趋势"}],
            model=name,
            tools=[compute_date_range, compute_now],
            execute_tool=True,
        )
        assert t.metadata["strategy"] == "native" and t.metadata["reason"] == ""
        assert [x["function"]["name"] for x in faults.last_body["tools"]] == ["compute_date_range", "compute_now"]
        assert faults.last_body["tool_choice"] == "required"
        assert t.metadata["tool_calls"][0]["id"] == "call_native_1" and len(t.values[0]) == 2
        stat = llm.stat(name)  # 2 answered requests of 3 + 1 tokens; 4 failed ones
        assert (stat["prompt_tokens"], stat["completion_tokens"], stat["total_tokens"]) == (6, 2, 8)
        assert stat["failed_requests"] == 4
        assert llm.deployment_info(name)["usage"]["total_tokens"] == 8
    finally:
        llm.undeploy(name)


def test_deadline_fallback_and_concurrency_limit_on_ray(llm, faults):
    name = "guarded"
    llm.setup_num_workers(1).setup_worker_concurrency(2)
    try:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name=name,
            infer_params={
                "saas.base_url": faults.url,
                "saas.model": "primary",
                "saas.timeout": 0.5,
                "saas.deadline": 1.2,
                "saas.max_retries": 5,
                "saas.backoff": 0.05,
                "saas.max_backoff": 0.05,
                "saas.fallback_models": "backup",
            },
        )
    finally:
        llm.setup_worker_concurrency(1)
    try:
        faults.reset("slow", delay=10)
        start = time.monotonic()
        with pytest.raises(UpstreamError, match="did not answer") as err:
            llm.chat_oai(ASK, model=name)
        assert time.monotonic() - start < 2.0 and err.value.status_code == 504
        faults.reset("fail_model", fail_model="primary")
        [r] = llm.chat_oai(ASK, model=name)
        assert r.output == "ok" and r.metadata["model"] == "backup" and r.metadata["attempts"] == 7
        # at most worker_concurrency (2) requests reach the upstream at once; the rest wait in the pool
        faults.reset("slow", delay=0.3)
        with ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda _: llm.chat_oai(ASK, model=name)[0].output, range(6)))
        assert outs == ["ok"] * 6 and faults.attempts == 6 and faults.peak == 2
    finally:
        llm.undeploy(name)


def test_unknown_saas_type_and_missing_model_are_named(llm):
    from byzerllm.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="saas/openai"):
        llm.deploy(model_path="", pretrained_model_type="saas/nowhere", udf_name="x")
    with pytest.raises(InvalidRequestError, match="saas.model is required"):
        llm.deploy(model_path="", pretrained_model_type="saas/openai", udf_name="x")
