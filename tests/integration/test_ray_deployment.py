"""The built-in model deployed on a real Ray cluster: requests, stats, faults, bad input."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time

import pytest

import byzerllm
from byzerllm.errors import (
    DeploymentExistsError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelPathError,
    UnsupportedParameterError,
)

from ..conftest import run_cli

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "Name three colours."}]
LONG = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]
ENDLESS = {"ignore_eos": True}  # generation runs to max_length whatever the model says


def test_chat_returns_text_and_documented_metadata(llm, smollm2_chat):
    [resp] = llm.chat_oai(ASK, model=smollm2_chat, llm_config={"max_length": 12, "seed": 1})
    assert isinstance(resp, byzerllm.LLMResponse) and resp.output
    m = resp.metadata
    assert set(m) >= {
        "input_tokens_count",
        "generated_tokens_count",
        "time_cost",
        "first_token_time",
        "speed",
        "finish_reason",
    }
    assert 0 < m["generated_tokens_count"] <= 12
    assert m["input_tokens_count"] > 5
    assert 0 < m["first_token_time"] <= m["time_cost"]
    assert m["speed"] == pytest.approx(m["generated_tokens_count"] / m["time_cost"])
    assert m["finish_reason"] in ("stop", "length")
    assert resp.input["model"] == smollm2_chat


def test_stream_deltas_join_to_the_non_stream_text_with_the_same_seed(llm, smollm2_chat):
    config = {"max_length": 40, "seed": 11}
    whole = llm.chat_oai(ASK, model=smollm2_chat, llm_config=config)[0]
    items = list(llm.stream_chat_oai(ASK, model=smollm2_chat, llm_config=config, delta_mode=True))
    assert "".join(t for t, _ in items) == whole.output
    last = items[-1][1]
    assert last.finish_reason == whole.metadata["finish_reason"]
    assert last.generated_tokens_count == whole.metadata["generated_tokens_count"]
    assert all(meta.finish_reason is None for _, meta in items[:-1])
    # delta_mode=False yields the text so far
    cumulative = [t for t, _ in llm.stream_chat_oai(ASK, model=smollm2_chat, llm_config=config)]
    assert cumulative[-1] == whole.output
    assert all(b.startswith(a) for a, b in itertools.pairwise(cumulative))


def test_stream_arrives_token_by_token(llm, smollm2_chat):
    stamps = [
        time.perf_counter()
        for _ in llm.stream_chat_oai(ASK, model=smollm2_chat, llm_config={"max_length": 30, "seed": 2}, delta_mode=True)
    ]
    assert len(stamps) >= 10
    assert stamps[-1] - stamps[1] > 0.05  # spread over the generation, not delivered at once


def test_deploy_in_one_process_query_from_another(llm, smollm2_chat):
    proc = run_cli("query", "--model", smollm2_chat, "--query", "Say hello.", "--max_length", "10", check=True)
    assert proc.stdout.strip()
    assert "generated" in proc.stderr and "finish_reason" in proc.stderr
    code = (
        "import byzerllm, json\n"
        "byzerllm.connect_cluster()\n"
        f"llm = byzerllm.ByzerLLM.from_default_model({smollm2_chat!r})\n"
        "r = llm.chat_oai([{'role': 'user', 'content': 'hi'}], llm_config={'max_length': 5})[0]\n"
        "print(json.dumps(r.metadata))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["generated_tokens_count"] <= 5


def test_get_meta(llm, smollm2_chat):
    meta = llm.get_meta(model=smollm2_chat)
    assert meta["model_deploy_type"] == "proprietary"
    assert meta["backend"] == "ray/llama_cpp"
    assert meta["max_model_len"] == 4096
    assert meta["support_stream"] is True and meta["support_chat_template"] is True
    assert meta["architectures"] == ["llama"]
    assert meta["tasks"] == ["chat"] and meta["options"]["n_ctx"] == 4096  # from the declared options
    with pytest.raises(InvalidRequestError, match="deployed for chat"):  # refused by the worker
        llm.emb(smollm2_chat, "a chat deployment has no embeddings")


def test_custom_template_role_mapping_and_extra_generation_params(llm, smollm2_chat):
    client = byzerllm.ByzerLLM().setup_default_model_name(smollm2_chat)
    client.setup_extra_generation_params(smollm2_chat, {"max_length": 3})
    [resp] = client.chat_oai(ASK)
    assert resp.metadata["generated_tokens_count"] <= 3
    client.setup_template(smollm2_chat, byzerllm.Templates.chatml())
    [resp] = client.chat_oai(ASK, role_mapping={"system_msg": "Answer in one word."})
    assert resp.input["prompt"].startswith("<|im_start|>system\nAnswer in one word.")
    assert resp.metadata["generated_tokens_count"] <= 3


async def test_async_twins_do_not_block_the_event_loop(llm, smollm2_chat):
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    [resp] = await llm.async_chat_oai(ASK, model=smollm2_chat, llm_config={"max_length": 30, "seed": 4})
    pieces = [
        t
        async for t, _ in llm.async_stream_chat_oai(
            ASK, model=smollm2_chat, llm_config={"max_length": 30, "seed": 4}, delta_mode=True
        )
    ]
    done.set()
    await task
    assert "".join(pieces) == resp.output
    assert ticks > 20  # the loop kept running while both requests were generated


def test_abort_stops_a_running_request_on_ray(llm, smollm2_chat):
    from ..compat.test_abort import run_and_abort

    resp, took = run_and_abort(llm, smollm2_chat, "abort-ray-1")
    assert resp.metadata["finish_reason"] == "cancelled"
    assert 0 < resp.metadata["generated_tokens_count"] < 400 and took < 5
    assert llm.stat(smollm2_chat)["busy_workers"] == 0


def test_unknown_model_lists_the_deployed_ones(llm, smollm2_chat):
    with pytest.raises(ModelNotFoundError, match=f"not deployed; deployed: .*{smollm2_chat}") as info:
        llm.chat_oai(ASK, model="no_such_model")
    assert smollm2_chat in info.value.available
    proc = run_cli("query", "--model", "no_such_model", "--query", "hi")
    assert proc.returncode == 1 and "deployed: " in proc.stderr and smollm2_chat in proc.stderr


def test_no_model_at_all_says_how_to_give_one(llm, smollm2_chat):
    with pytest.raises(InvalidRequestError, match="setup_default_model_name"):
        byzerllm.ByzerLLM().chat_oai(ASK)


def test_bad_deploys_are_named_and_leave_nothing_behind(llm, smollm2_chat, tmp_path):
    before = llm.list_deployments()
    missing = str(tmp_path / "nowhere.gguf")
    with pytest.raises(ModelPathError, match=missing):
        llm.deploy(model_path=missing, udf_name="bad1")
    with pytest.raises(UnsupportedParameterError, match="'n_thread'"):
        llm.deploy(model_path="builtin:smollm2", udf_name="bad2", infer_params={"backend.n_thread": 2})
    with pytest.raises(DeploymentExistsError):
        llm.deploy(model_path="builtin:smollm2", udf_name=smollm2_chat)
    with pytest.raises(InvalidRequestError, match="round_robin"):
        byzerllm.ByzerLLM().setup_load_balance_way("fastest").deploy(udf_name="bad3")
    assert llm.list_deployments() == before
    proc = run_cli("deploy", "--model", "bad4", "--model_path", missing)
    assert proc.returncode == 1 and missing in proc.stderr
    proc = run_cli("deploy", "--model", "bad5", "--infer_params", "n_threads=1", "bogus=true")
    assert proc.returncode == 1 and "'bogus'" in proc.stderr and "n_threads" in proc.stderr
    proc = run_cli("deploy", "--model", "bad6", "--num_workers", "two")
    assert proc.returncode == 2 and "--num_workers" in proc.stderr
    assert llm.list_deployments() == before


def test_cli_deploy_list_undeploy(llm, smollm2_chat):
    proc = run_cli(
        "deploy",
        "--model",
        "cli_chat",
        "--num_workers",
        "1",
        "--infer_params",
        "backend.max_model_len=1024",
        "n_threads=1",
        check=True,
    )
    assert "Deployed cli_chat" in proc.stdout and "max_model_len 1024" in proc.stdout
    rows = json.loads(run_cli("list", "--json", check=True).stdout)
    row = next(r for r in rows if r["model"] == "cli_chat")
    assert row["state"] == "running" and row["backend"] == "llama_cpp"
    assert "cli_chat" in run_cli("list", check=True).stdout
    assert "Undeployed cli_chat" in run_cli("undeploy", "--model", "cli_chat", check=True).stdout
    assert not llm.is_model_exist("cli_chat")
