"""``SimpleByzerLLM`` (the client API in this process, no Ray) on SaaS and local backends, and the
``easy-byzerllm`` command, against real local upstreams."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import byzerllm
from byzerllm.cli.easy import cli, resolve_model
from byzerllm.errors import InvalidRequestError, ModelNotFoundError, QueueFullError, UpstreamError

from ..saas_upstream import chunk, completion, serve, sse

ASK = [{"role": "user", "content": "hi"}]


def deepseek_like(seen: list[dict]) -> Starlette:
    """DeepSeek's reasoning-model wire format: ``reasoning_content`` before ``content``."""

    async def chat(request: Request):
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        if body.get("stream"):
            usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
            return StreamingResponse(
                iter(
                    [
                        sse(
                            chunk({"role": "assistant", "reasoning_content": "Think"}),
                            chunk({"reasoning_content": "ing."}),
                            chunk({"content": "Hello"}),
                            chunk({}, "stop"),
                            chunk(usage=usage),
                            "[DONE]",
                        )
                    ]
                ),
                media_type="text/event-stream",
            )
        return JSONResponse(completion("Hello", body["model"], reasoning_content="Thinking."))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_simple_client_on_a_saas_upstream(faults):
    faults.reset("ok")
    with byzerllm.SimpleByzerLLM() as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="up",
            infer_params={"saas.base_url": faults.url, "saas.model": "m", "saas.api_key": "sk-secret-5678"},
        )
        llm.setup_default_model_name("up")
        [r] = llm.chat_oai(ASK)
        assert r.output == "ok" and r.metadata["input_tokens_count"] == 3 and r.metadata["attempts"] == 1
        items = list(llm.stream_chat_oai(ASK, delta_mode=True))
        assert "".join(t for t, _ in items) == "ok" and items[-1][1].finish_reason == "stop"
        [a] = asyncio.run(llm.async_chat_oai(ASK))
        assert a.output == "ok"

        async def collect():
            return [t async for t, _ in llm.async_stream_chat_oai(ASK)]

        assert asyncio.run(collect())[-1] == "ok"
        meta = llm.get_meta()
        assert meta["model_deploy_type"] == "saas" and meta["backend"] == "inprocess/openai"
        info = llm.deployment_info("up")
        assert info["spec"]["options"]["api_key"] == "***5678" and "sk-secret" not in json.dumps(info)
        stat = llm.stat()
        assert stat["total_requests"] == [4] and stat["prompt_tokens"] == 12 and stat["completion_tokens"] == 6
        assert llm.list_deployments() == ["up"]
    with pytest.raises(ModelNotFoundError):
        llm.chat_oai(ASK, model="up")


def test_simple_client_caps_in_flight_requests_and_its_queue(faults):
    faults.reset("slow", delay=0.3)
    with byzerllm.SimpleByzerLLM().setup_worker_concurrency(2) as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="capped",
            infer_params={"saas.base_url": faults.url, "saas.model": "m"},
        )
        with ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda _: llm.chat_oai(ASK, model="capped")[0].output, range(6)))
        assert outs == ["ok"] * 6 and faults.peak == 2
    faults.reset("slow", delay=0.5)
    with byzerllm.SimpleByzerLLM().setup_max_queue(0) as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="tiny",
            infer_params={"saas.base_url": faults.url, "saas.model": "m"},
        )
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(llm.chat_oai, ASK, model="tiny") for _ in range(2)]
            errors = [f.exception() for f in futures]
        assert sum(isinstance(e, QueueFullError) for e in errors) == 1


def test_simple_client_errors_and_native_tools(faults):
    from ..doc_tools import compute_date_range, compute_now

    with byzerllm.SimpleByzerLLM() as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="f",
            infer_params={"saas.base_url": faults.url, "saas.model": "m", "saas.backoff": 0.01},
        )
        faults.reset("500")
        with pytest.raises(UpstreamError, match="upstream broke"):
            llm.chat_oai(ASK, model="f")
        assert faults.attempts == 3 and llm.stat("f")["failed_requests"] == 1
        faults.reset("ok")
        [t] = llm.chat_oai(
            [{"role": "user", "content": "最近三个月趋势"}],
            model="f",
            tools=[compute_date_range, compute_now],
            execute_tool=True,
        )
        assert t.metadata["strategy"] == "native" and len(t.values[0]) == 2


def test_simple_client_embeddings_and_their_upstream_errors(faults):
    with byzerllm.SimpleByzerLLM() as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="e",
            infer_params={"saas.base_url": faults.url, "saas.model": "emb-m", "saas.backoff": 0.01},
        )
        faults.reset("ok")
        out = llm.emb("e", ["a", "bbb", "cc"])  # the upstream answers in reverse order, with indexes
        assert [r.output for r in out] == [[1.0, 0.0, 1.0], [3.0, 1.0, 1.0], [2.0, 2.0, 1.0]]
        assert faults.last_body["encoding_format"] == "float" and faults.last_body["model"] == "emb-m"
        assert out[0].metadata["input_tokens_count"] == 6
        [q] = llm.emb_query("four", model="e")
        assert q.output == [4.0, 0.0, 1.0]
        faults.reset("429", retry_after="0.01")
        with pytest.raises(UpstreamError, match="answered 429: slow down") as err:
            llm.emb("e", ["a"])
        assert err.value.status == 429 and err.value.attempts == faults.attempts == 3
        faults.reset("malformed")
        with pytest.raises(UpstreamError, match="malformed JSON"):
            llm.emb("e", ["a"])
        assert faults.attempts == 3
        faults.reset("per_token")
        with pytest.raises(UpstreamError, match=r"data\[0\]\.embedding is 2 vectors \(one per token\)") as err:
            llm.emb("e", ["a", "b"])
        assert faults.attempts == 1 and err.value.status_code == 502
        faults.reset("short")
        with pytest.raises(UpstreamError, match="1 embeddings for 2 inputs"):
            llm.emb("e", ["a", "b"])
        faults.reset("ok")
        assert llm.emb("e", "still serving")[0].output == [13.0, 0.0, 1.0]


def test_reasoning_content_reaches_the_caller():
    seen: list[dict] = []
    with serve(deepseek_like(seen)) as url, byzerllm.SimpleByzerLLM() as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/deepseek",
            udf_name="r1",
            infer_params={"saas.base_url": url + "/v1", "saas.model": "deepseek-reasoner", "saas.api_key": "sk-1"},
        )
        [r] = llm.chat_oai(ASK, model="r1")
        assert r.output == "Hello" and r.metadata["reasoning_content"] == "Thinking."
        items = list(llm.stream_chat_oai(ASK, model="r1", delta_mode=True))
        assert [m.reasoning_content for _, m in items if m.reasoning_content] == ["Think", "ing."]
        assert "".join(t for t, _ in items) == "Hello" and items[-1][1].generated_tokens_count == 3
        whole = list(llm.stream_chat_oai(ASK, model="r1"))
        assert whole[-1][1].reasoning_content == "Thinking." and whole[-1][0] == "Hello"
    assert seen[0]["body"]["model"] == "deepseek-reasoner" and seen[0]["auth"] == "Bearer sk-1"


@pytest.mark.integration
def test_simple_client_on_the_local_model():
    with byzerllm.SimpleByzerLLM() as llm:
        llm.deploy(model_path="builtin:smollm2", udf_name="local")
        [r] = llm.chat_oai(ASK, model="local", llm_config={"max_length": 8})
        assert 0 < r.metadata["generated_tokens_count"] <= 8
        items = list(llm.stream_chat_oai(ASK, model="local", llm_config={"max_length": 4}, delta_mode=True))
        assert items[-1][1].finish_reason in ("stop", "length")
        assert llm.get_meta(model="local")["backend"] == "inprocess/llama_cpp"


def test_easy_table_resolution():
    e = resolve_model("deepseek-chat")
    assert (e["provider"], e["model"], e["base_url"]) == ("deepseek", "deepseek-chat", "https://api.deepseek.com/v1")
    e = resolve_model("alibaba/Qwen1.5-110B-Chat")
    assert e["provider"] == "siliconflow" and e["model"] == "alibaba/Qwen1.5-110B-Chat"
    assert resolve_model("my-model", provider="ollama")["base_url"] == "http://127.0.0.1:11434/v1"
    with pytest.raises(InvalidRequestError, match="deepseek-chat") as err:
        resolve_model("no-such-model")
    assert err.value.param == "model"


def test_easy_chat_in_process_and_models_table():
    seen: list[dict] = []
    with serve(deepseek_like(seen)) as url:
        out = CliRunner().invoke(
            cli, ["chat", "deepseek-reasoner", "hi", "--local", "--token", "sk-easy-0001", "--base_url", url + "/v1"]
        )
    assert out.exit_code == 0, out.output
    assert "Hello" in out.stdout and seen[0]["body"]["model"] == "deepseek-reasoner"
    assert seen[0]["auth"] == "Bearer sk-easy-0001"
    out = CliRunner().invoke(cli, ["models"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "deepseek-reasoner" in out.stdout and "api.moonshot.cn" in out.stdout
    out = CliRunner().invoke(cli, ["chat", "nowhere-model", "hi", "--local"])
    assert out.exit_code == 1 and "not in the table" in out.output


def test_keys_inside_fallback_models_are_masked(faults):
    with byzerllm.SimpleByzerLLM() as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="fb",
            infer_params={
                "saas.base_url": faults.url,
                "saas.model": "m",
                "saas.api_key": "sk-main-1111",
                "saas.fallback_models": [{"model": "b", "base_url": faults.url, "api_key": "sk-backup-2222"}],
            },
        )
        info = json.dumps(llm.deployment_info("fb"))
        assert "***2222" in info and "sk-backup" not in info and "sk-main" not in info
        assert llm.get_meta(model="fb")["fallback_models"] == ["b"]


@pytest.mark.parametrize("strategy", ["round_robin", "least_busy", "lru"])
def test_simple_client_balances_with_the_deployment_strategy(faults, strategy):
    faults.reset("ok")
    with byzerllm.SimpleByzerLLM().setup_num_workers(2).setup_load_balance_way(strategy) as llm:
        llm.deploy(
            model_path="",
            pretrained_model_type="saas/openai",
            udf_name="balanced",
            infer_params={"saas.base_url": faults.url, "saas.model": "m"},
        )
        for _ in range(4):
            llm.chat_oai(ASK, model="balanced")
        stat = llm.stat("balanced")
        assert stat["load_balance_strategy"] == strategy and stat["total_requests"] == [2, 2]
