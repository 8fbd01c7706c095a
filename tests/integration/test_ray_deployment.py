"""The built-in model deployed on a real Ray cluster: requests, stats, faults, bad input."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import byzerllm
from byzerllm.errors import (
    DeploymentExistsError,
    DeploymentUndeployedError,
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


def test_stat_counts_equal_requests_and_two_workers_share_load(llm):
    name = "stat_chat"
    llm.setup_num_workers(2)
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    llm.setup_num_workers(1)
    try:
        threads = [
            threading.Thread(target=llm.chat_oai, args=(ASK,), kwargs={"model": name, "llm_config": {"max_length": 20}})
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(3):
            llm.chat_oai(ASK, model=name, llm_config={"max_length": 2})
        for _ in llm.stream_chat_oai(ASK, model=name, llm_config={"max_length": 2}):
            pass
        s = llm.stat(name)
        assert sum(s["total_requests"]) == 10
        assert min(s["total_requests"]) >= 3  # both workers served
        assert s["total_workers"] == 2 and s["busy_workers"] == 0 and s["idle_workers"] == 2
        assert s["state"] == [1, 1] and s["worker_max_concurrency"] == 1
        assert s["load_balance_strategy"] == "lru"
        assert all(x.endswith("s") and float(x[:-1]) >= 0 for x in s["workers_last_work_time"])
        cli = run_cli("stat", "--model", name, "--interval", "0.1", "--count", "2", check=True)
        assert cli.stdout.count('"total_workers": 2') == 2
        for _ in range(5):  # refused by the worker, which still served (and counts) the request
            with pytest.raises(InvalidRequestError, match="deployed for chat"):
                llm.emb(name, "a chat deployment has no embeddings")
        assert sum(llm.stat(name)["total_requests"]) == 15
    finally:
        llm.undeploy(name)


def test_busy_slots_show_while_a_request_runs_and_early_exit_frees_them(llm):
    name = "busy_chat"
    llm.setup_worker_concurrency(2).setup_load_balance_way("round_robin")
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    llm.setup_worker_concurrency(1).setup_load_balance_way("lru")
    try:
        stream = llm.stream_chat_oai(LONG, model=name, llm_config={"max_length": 400, **ENDLESS})
        next(stream)
        s = llm.stat(name)
        assert s["busy_workers"] == 1 and s["state"] == [1] and s["load_balance_strategy"] == "round_robin"
        stream.close()  # stop reading: the generation is cancelled, the slot comes back
        deadline = time.monotonic() + 10
        while llm.stat(name)["state"] != [2] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert llm.stat(name)["state"] == [2]
        start = time.monotonic()
        llm.chat_oai(ASK, model=name, llm_config={"max_length": 2})
        assert time.monotonic() - start < 5  # not stuck behind the 400-token generation
    finally:
        llm.undeploy(name)


def test_abort_stops_a_running_request_on_ray(llm, smollm2_chat):
    from ..compat.test_abort import run_and_abort

    resp, took = run_and_abort(llm, smollm2_chat, "abort-ray-1")
    assert resp.metadata["finish_reason"] == "cancelled"
    assert 0 < resp.metadata["generated_tokens_count"] < 400 and took < 5
    assert llm.stat(smollm2_chat)["busy_workers"] == 0


def test_a_killed_worker_is_replaced_and_the_next_request_succeeds(llm):
    name = "kill_chat"
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    try:
        [pid] = llm.runtime.worker_pids(name)
        os.kill(pid, signal.SIGKILL)
        [resp] = llm.chat_oai(ASK, model=name, llm_config={"max_length": 5})
        assert resp.metadata["generated_tokens_count"] > 0
        [new_pid] = llm.runtime.worker_pids(name)
        assert new_pid != pid
        assert sum(llm.stat(name)["total_requests"]) >= 1
    finally:
        llm.undeploy(name)


def test_requests_on_a_dying_worker(llm):
    """A non-streamed request is sent again; a stream that already delivered text fails clearly."""
    from byzerllm.errors import WorkerDiedError

    name = "die_chat"
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    try:
        [pid] = llm.runtime.worker_pids(name)
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        [resp] = llm.chat_oai(ASK, model=name, llm_config={"max_length": 200, **ENDLESS})
        assert resp.metadata["generated_tokens_count"] > 0
        assert sum(llm.stat(name)["total_requests"]) >= 2  # the first attempt and the retry
        [pid] = llm.runtime.worker_pids(name)
        stream = llm.stream_chat_oai(LONG, model=name, llm_config={"max_length": 2000, **ENDLESS})
        next(stream)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError, match="died"):
            for _ in stream:
                pass
        after = llm.chat_oai(ASK, model=name, llm_config={"max_length": 3, **ENDLESS})[0]
        assert after.metadata["generated_tokens_count"] == 3 and after.metadata["finish_reason"] == "length"
        stat = llm.stat(name)
        assert stat["state"] == [1]
        # the attempt the worker's death ended and the stream it cut are failures, counted once each
        assert stat["failed_requests"] == 2  # the leases of the failed requests were returned
    finally:
        llm.undeploy(name)


def test_undeploy_while_requests_run_ends_them_with_a_clear_error(llm):
    name = "gone_chat"
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    stream = llm.stream_chat_oai(LONG, model=name, llm_config={"max_length": 2000, **ENDLESS})
    next(stream)  # the request is running on the worker
    threading.Thread(target=byzerllm.ByzerLLM().undeploy, args=(name,)).start()
    with pytest.raises(DeploymentUndeployedError, match="undeployed while the request was running"):
        for _ in stream:
            pass
    assert not llm.is_model_exist(name)


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


def test_a_client_killed_mid_stream_gives_its_slot_back(llm, smollm2_chat):
    name = "orphan_chat"
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    try:
        code = (
            "import byzerllm, os, sys\n"
            "byzerllm.connect_cluster()\n"
            f"s = byzerllm.ByzerLLM().stream_chat_oai([{{'role': 'user', 'content': 'Tell a story.'}}], model={name!r},"
            " llm_config={'max_length': 150, 'ignore_eos': True})\n"
            "next(s); print('streaming', flush=True); os._exit(0)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "streaming" in out.stdout
        deadline = time.monotonic() + 30
        while llm.stat(name)["state"] != [1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert llm.stat(name)["state"] == [1]
        after = llm.chat_oai(ASK, model=name, llm_config={"max_length": 2, **ENDLESS})[0]
        assert after.metadata["generated_tokens_count"] == 2
    finally:
        llm.undeploy(name)


def test_a_worker_busy_with_another_clients_request_sends_the_request_to_the_pool_queue(llm):
    """Each client routes its own requests; a worker full with another client's request answers
    busy, and the request waits in the pool's queue until the slot is free."""
    name = "two_clients_chat"
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    other = byzerllm.ByzerLLM()  # a second client, with its own view of the workers
    try:
        stream = llm.stream_chat_oai(LONG, model=name, llm_config={"max_length": 400, **ENDLESS})
        next(stream)
        answers = []
        t = threading.Thread(
            target=lambda: answers.append(other.chat_oai(ASK, model=name, llm_config={"max_length": 2}))
        )
        t.start()
        deadline = time.monotonic() + 10
        while llm.stat(name)["queued_requests"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert llm.stat(name)["queued_requests"] == 1 and not answers
        stream.close()  # the slot comes back; the queued request gets it
        t.join(30)
        assert answers and answers[0][0].metadata["generated_tokens_count"] > 0
        s = llm.stat(name)
        assert s["total_requests"] == [2] and s["busy_workers"] == 0 and s["queued_requests"] == 0
    finally:
        llm.undeploy(name)


def wait_stat(llm, name, want, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = llm.stat(name)
        if all(s[k] == v for k, v in want.items()):
            return s
        time.sleep(0.1)
    return llm.stat(name)


def test_a_queued_request_that_gives_up_leaves_no_slot_behind(llm):
    """A request waiting in the pool's queue that is cancelled (a server's request timeout) or
    whose process is killed must not keep the slot the pool grants it later."""
    name = "queue_chat"
    llm.deploy(model_path="builtin:smollm2", udf_name=name)
    try:
        busy = llm.stream_chat_oai(LONG, model=name, llm_config={"max_length": 400, **ENDLESS})
        next(busy)  # the one slot is taken

        async def give_up():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(llm.async_chat_oai(ASK, model=name, llm_config={"max_length": 2}), 1.0)

        asyncio.run(give_up())
        code = (
            "import byzerllm\n"
            "byzerllm.connect_cluster()\n"
            f"byzerllm.ByzerLLM().chat_oai([{{'role': 'user', 'content': 'hi'}}], model={name!r},"
            " llm_config={'max_length': 2})\n"
        )
        waiter = subprocess.Popen([sys.executable, "-c", code])
        assert wait_stat(llm, name, {"queued_requests": 1})["queued_requests"] == 1
        waiter.send_signal(signal.SIGKILL)
        waiter.wait()
        busy.close()  # the slot comes free; neither waiter may keep it
        s = wait_stat(llm, name, {"state": [1], "queued_requests": 0})
        assert s["state"] == [1] and s["queued_requests"] == 0 and s["busy_workers"] == 0
        start = time.monotonic()
        after = llm.chat_oai(ASK, model=name, llm_config={"max_length": 2, **ENDLESS})[0]
        assert after.metadata["generated_tokens_count"] == 2 and time.monotonic() - start < 5
    finally:
        llm.undeploy(name)
