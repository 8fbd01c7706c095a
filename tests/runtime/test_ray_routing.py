"""The fast tier on real Ray: routing, retries, cancellation, queueing and counting, on the echo
backend (no model to load, a deployment starts in about a second)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

import byzerllm
from byzerllm.errors import DeploymentUndeployedError, QueueFullError, WorkerDiedError

from ..conftest import run_cli

ASK = [{"role": "user", "content": "one two three"}]
LONG = [{"role": "user", "content": "count along with me"}]
ENDLESS = {"ignore_eos": True}  # the words repeat until max_length


@contextmanager
def echo(name, workers=1, concurrency=1, token_delay=0.005, load_balance="lru", max_queue=1024):
    """An echo deployment on the session's cluster, with a client of its own; undeployed after."""
    client = (
        byzerllm.ByzerLLM()
        .setup_infer_backend("echo")
        .setup_num_workers(workers)
        .setup_worker_concurrency(concurrency)
        .setup_load_balance_way(load_balance)
        .setup_max_queue(max_queue)
    )
    client.deploy(model_path="", udf_name=name, infer_params={"token_delay": token_delay})
    try:
        yield client
    finally:
        if client.is_model_exist(name):
            client.undeploy(name)


def wait_stat(llm, name, want, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = llm.stat(name)
        if all(s[k] == v for k, v in want.items()):
            return s
        time.sleep(0.05)
    return llm.stat(name)


def test_stat_counts_every_request_and_both_workers_serve(ray_cluster):
    with echo("fast_stat", workers=2) as llm:
        threads = [threading.Thread(target=llm.chat_oai, args=(ASK,), kwargs={"model": "fast_stat"}) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(3):
            llm.chat_oai(ASK, model="fast_stat")
        for _ in llm.stream_chat_oai(ASK, model="fast_stat"):
            pass
        s = llm.stat("fast_stat")
        assert sum(s["total_requests"]) == 10 and min(s["total_requests"]) >= 3
        assert s["total_workers"] == 2 and s["busy_workers"] == 0 and s["state"] == [1, 1]
        assert s["prompt_tokens"] == 30 and s["completion_tokens"] == 30 and s["failed_requests"] == 0
        cli = run_cli("stat", "--model", "fast_stat", "--interval", "0.1", "--count", "2", check=True)
        assert cli.stdout.count('"total_workers": 2') == 2


@pytest.mark.parametrize("strategy", ["round_robin", "least_busy", "random", "lru"])
def test_each_strategy_routes_to_a_free_worker_and_is_reported(ray_cluster, strategy):
    with echo(f"fast_{strategy}", workers=2, load_balance=strategy) as llm:
        for _ in range(4):
            llm.chat_oai(ASK, model=f"fast_{strategy}")
        s = llm.stat(f"fast_{strategy}")
        assert s["load_balance_strategy"] == strategy and sum(s["total_requests"]) == 4
        if strategy in ("round_robin", "lru"):
            assert s["total_requests"] == [2, 2]


def test_busy_slots_show_while_a_request_runs_and_early_exit_frees_them(ray_cluster):
    with echo("fast_busy", concurrency=2, token_delay=0.01) as llm:
        stream = llm.stream_chat_oai(LONG, model="fast_busy", llm_config={"max_length": 2000, **ENDLESS})
        next(stream)
        s = llm.stat("fast_busy")
        assert s["busy_workers"] == 1 and s["state"] == [1]
        stream.close()  # stop reading: the generation is cancelled, the slot comes back
        assert wait_stat(llm, "fast_busy", {"state": [2]})["state"] == [2]


def test_a_killed_worker_is_replaced_and_requests_on_it_are_retried_or_fail_clearly(ray_cluster):
    with echo("fast_die", token_delay=0.01) as llm:
        [pid] = llm.runtime.worker_pids("fast_die")
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
        [resp] = llm.chat_oai(LONG, model="fast_die", llm_config={"max_length": 100, **ENDLESS})
        assert resp.metadata["generated_tokens_count"] == 100  # sent again to the new process
        [new_pid] = llm.runtime.worker_pids("fast_die")
        assert new_pid != pid
        stream = llm.stream_chat_oai(LONG, model="fast_die", llm_config={"max_length": 2000, **ENDLESS})
        next(stream)
        os.kill(new_pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError, match="died"):
            for _ in stream:
                pass
        after = llm.chat_oai(ASK, model="fast_die", llm_config={"max_length": 3, **ENDLESS})[0]
        assert after.metadata["generated_tokens_count"] == 3
        s = llm.stat("fast_die")
        assert s["state"] == [1] and s["failed_requests"] == 2  # each cut attempt counted once


def test_undeploy_while_requests_run_ends_them_with_a_clear_error(ray_cluster):
    with echo("fast_gone", token_delay=0.01) as llm:
        stream = llm.stream_chat_oai(LONG, model="fast_gone", llm_config={"max_length": 2000, **ENDLESS})
        next(stream)
        undeploy = threading.Thread(target=byzerllm.ByzerLLM().undeploy, args=("fast_gone",))
        undeploy.start()
        with pytest.raises(DeploymentUndeployedError, match="undeployed while the request was running"):
            for _ in stream:
                pass
        undeploy.join(30)  # the stream ends as the workers die, a moment before the pool is gone
        assert not llm.is_model_exist("fast_gone")


def test_a_client_killed_mid_stream_gives_its_slot_back(ray_cluster):
    # the worker returns the slot when the orphaned generation ends (2 s here): the pool does not
    # depend on the dead caller
    with echo("fast_orphan", token_delay=0.01) as llm:
        code = (
            "import byzerllm\n"
            "byzerllm.connect_cluster()\n"
            "s = byzerllm.ByzerLLM().stream_chat_oai([{'role': 'user', 'content': 'a b'}], model='fast_orphan',"
            " llm_config={'max_length': 200, 'ignore_eos': True})\n"
            "next(s); print('streaming', flush=True); import os; os._exit(0)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "streaming" in out.stdout
        assert wait_stat(llm, "fast_orphan", {"state": [1]})["state"] == [1]


def test_a_worker_busy_with_another_clients_request_sends_the_request_to_the_pool_queue(ray_cluster):
    with echo("fast_two", token_delay=0.01) as llm:
        other = byzerllm.ByzerLLM()  # a second client, with its own view of the workers
        stream = llm.stream_chat_oai(LONG, model="fast_two", llm_config={"max_length": 2000, **ENDLESS})
        next(stream)
        answers = []
        t = threading.Thread(target=lambda: answers.append(other.chat_oai(ASK, model="fast_two")))
        t.start()
        assert wait_stat(llm, "fast_two", {"queued_requests": 1})["queued_requests"] == 1 and not answers
        stream.close()  # the slot comes back; the queued request gets it
        t.join(30)
        assert answers and answers[0][0].output == "one two three"
        s = llm.stat("fast_two")
        assert s["total_requests"] == [2] and s["busy_workers"] == 0 and s["queued_requests"] == 0


def test_the_queue_is_bounded_by_max_queue(ray_cluster):
    with echo("fast_full", token_delay=0.01, max_queue=1) as llm:
        stream = llm.stream_chat_oai(LONG, model="fast_full", llm_config={"max_length": 2000, **ENDLESS})
        next(stream)
        waiter = threading.Thread(target=byzerllm.ByzerLLM().chat_oai, args=(ASK,), kwargs={"model": "fast_full"})
        waiter.start()
        assert wait_stat(llm, "fast_full", {"queued_requests": 1})["queued_requests"] == 1
        with pytest.raises(QueueFullError, match="max_queue 1"):
            byzerllm.ByzerLLM().chat_oai(ASK, model="fast_full")
        stream.close()
        waiter.join(30)
        s = wait_stat(llm, "fast_full", {"state": [1], "queued_requests": 0})
        assert s["state"] == [1] and s["queued_requests"] == 0


def test_a_queued_request_that_gives_up_leaves_no_slot_behind(ray_cluster):
    """A request waiting in the pool's queue that is cancelled (a server's request timeout) or
    whose process is killed must not keep the slot the pool grants it later."""
    with echo("fast_queue", token_delay=0.01) as llm:
        busy = llm.stream_chat_oai(LONG, model="fast_queue", llm_config={"max_length": 2000, **ENDLESS})
        next(busy)  # the one slot is taken

        async def give_up():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(llm.async_chat_oai(ASK, model="fast_queue"), 1.0)

        asyncio.run(give_up())
        code = (
            "import byzerllm\n"
            "byzerllm.connect_cluster()\n"
            "byzerllm.ByzerLLM().chat_oai([{'role': 'user', 'content': 'hi'}], model='fast_queue')\n"
        )
        waiter = subprocess.Popen([sys.executable, "-c", code])
        assert wait_stat(llm, "fast_queue", {"queued_requests": 1})["queued_requests"] == 1
        waiter.send_signal(signal.SIGKILL)
        waiter.wait()
        busy.close()  # the slot comes free; neither waiter may keep it
        s = wait_stat(llm, "fast_queue", {"state": [1], "queued_requests": 0})
        assert s["state"] == [1] and s["queued_requests"] == 0 and s["busy_workers"] == 0
        start = time.monotonic()
        after = llm.chat_oai(ASK, model="fast_queue", llm_config={"max_length": 2, **ENDLESS})[0]
        assert after.metadata["generated_tokens_count"] == 2 and time.monotonic() - start < 5


async def test_async_requests_share_the_slots_with_sync_ones(ray_cluster):
    with echo("fast_async", workers=2, concurrency=2) as llm:
        answers = await asyncio.gather(*(llm.async_chat_oai(ASK, model="fast_async") for _ in range(12)))
        assert [a[0].output for a in answers] == ["one two three"] * 12
        chunks = [c async for c in llm.async_stream_chat_oai(ASK, model="fast_async")]
        assert chunks[-1][0] == "one two three"  # each chunk carries the text so far
        s = llm.stat("fast_async")
        assert sum(s["total_requests"]) == 13 and s["state"] == [2, 2]
