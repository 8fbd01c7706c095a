"""Faults under load: streaming clients through ``byzerllm serve`` while workers and the server die.

For ``--seconds`` (300), ``--clients`` (32) streaming clients send chat completions to ``byzerllm
serve --request_timeout 2`` in front of an ``echo`` deployment (2 workers x 4 slots, 10 ms a token,
20 to 200 tokens a request): 15% of the requests are dropped by their client after two chunks, a
worker process is killed every ``--kill_every`` seconds (30), and the server process is killed and
started again once, half way. Afterwards ``stat`` must show every slot free and nothing queued,
and every request sent must be counted once: completed, dropped by its client, or failed with a
documented error (HTTP 429 / 503 / 504 with OpenAI's error body, an error event in the stream, or
a connection cut by the killed server). Prints a table and writes bench/results/chaos.json.

    python bench/chaos.py [--seconds 300] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from _common import print_table, ray_cluster, write_result
from ray.exceptions import RayError

BIN = Path(sys.executable).parent
DEPLOYMENT = "chaos_echo"
WORKERS, SLOTS = 2, 4
# what a failed request may end with, as docs/server.md and docs/deployment.md document them
DOCUMENTED = {
    "http 429 rate_limit_error",
    "http 503 service_unavailable",
    "http 504 timeout",
    "stream error service_unavailable",
    "stream error timeout",
    "connection cut (server killed)",
}
WORDS = " ".join(f"w{i}" for i in range(200))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``byzerllm serve`` as a process that can be killed and started again on the same port."""

    def __init__(self, port: int, request_timeout: float) -> None:
        self.port, self.request_timeout, self.proc = port, request_timeout, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "byzerllm"), "serve", "--port", str(self.port), "--request_timeout", str(self.request_timeout)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("byzerllm serve did not come up")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def one_request(http: httpx.AsyncClient, url: str, rng: random.Random) -> str:
    """Send one streamed request; its outcome: ``completed``, ``dropped``, or a failure kind."""
    body = {
        "model": DEPLOYMENT,
        "stream": True,
        "max_tokens": rng.randint(20, 200),
        "messages": [{"role": "user", "content": WORDS}],
        "ignore_eos": True,
    }
    drop = rng.random() < 0.15
    try:
        async with http.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                error = json.loads(await r.aread())["error"]
                return f"http {r.status_code} {error['type']}"
            chunks = 0
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return f"stream error {event['error']['type']}"
                chunks += 1
                if drop and chunks == 2:
                    return "dropped"
                if event["choices"] and event["choices"][0].get("finish_reason"):
                    return "completed" if event["choices"][0]["finish_reason"] == "length" else "unexpected finish"
            return "stream ended without finish"
    except (httpx.TransportError, httpx.RemoteProtocolError):
        await asyncio.sleep(0.2)  # the server is down: do not spin while it starts again
        return "connection cut (server killed)"


async def load(url: str, clients: int, seconds: float, outcomes: Counter, seed: int) -> None:
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5), limits=limits) as http:

        async def client(i: int) -> None:
            rng = random.Random(seed + i)
            while time.monotonic() < deadline:
                outcomes["sent"] += 1
                outcomes[await one_request(http, url, rng)] += 1

        await asyncio.gather(*(client(i) for i in range(clients)))


def run_chaos(
    llm, seconds: float, clients: int, kill_every: float, request_timeout: float = 2.0, seed: int = 0
) -> dict:
    """Run the scenario against a connected ``ByzerLLM`` client; returns the counts and the checks."""
    llm.setup_num_workers(WORKERS).setup_worker_concurrency(SLOTS).setup_infer_backend("echo")
    llm.deploy(model_path="", udf_name=DEPLOYMENT, infer_params={"token_delay": 0.01})
    llm.setup_num_workers(1).setup_worker_concurrency(1).setup_infer_backend(None)
    server = Server(free_port(), request_timeout)
    server.start()
    outcomes: Counter = Counter()
    faults = {"workers_killed": 0, "server_restarts": 0}
    start = time.monotonic()
    try:
        loop = asyncio.new_event_loop()
        runner = loop.create_task(
            load(f"http://127.0.0.1:{server.port}/v1/chat/completions", clients, seconds, outcomes, seed)
        )

        async def faulty() -> None:
            next_kill, restarted = kill_every, False
            while not runner.done():
                await asyncio.sleep(0.2)
                now = time.monotonic() - start
                if now >= next_kill and now < seconds:
                    try:
                        pids = await asyncio.to_thread(llm.runtime.worker_pids, DEPLOYMENT)
                    except RayError:  # a worker is still restarting from the last kill: try again
                        continue
                    os.kill(random.Random(seed + int(now)).choice(pids), signal.SIGKILL)
                    faults["workers_killed"] += 1
                    next_kill += kill_every
                if not restarted and now >= seconds / 2:
                    await asyncio.to_thread(server.kill)
                    await asyncio.to_thread(server.start)
                    faults["server_restarts"] += 1
                    restarted = True

        loop.run_until_complete(asyncio.gather(runner, faulty()))
        loop.close()
        # the workers' and the pool's counts settle: every slot free, nothing queued
        deadline, stat = time.monotonic() + 30, llm.stat(DEPLOYMENT)
        while time.monotonic() < deadline and (stat["state"] != [SLOTS] * WORKERS or stat["queued_requests"]):
            time.sleep(0.2)
            stat = llm.stat(DEPLOYMENT)
    finally:
        server.stop()
        llm.undeploy(DEPLOYMENT)
    failures = {k: v for k, v in outcomes.items() if k not in ("sent", "completed", "dropped")}
    return {
        "seconds": seconds,
        "clients": clients,
        **faults,
        "sent": outcomes["sent"],
        "completed": outcomes["completed"],
        "dropped_by_client": outcomes["dropped"],
        "failed": sum(failures.values()),
        "failures": failures,
        "undocumented_failures": {k: v for k, v in failures.items() if k not in DOCUMENTED},
        "stat_after": {k: stat[k] for k in ("state", "busy_workers", "queued_requests", "total_requests")},
        "all_slots_free": stat["state"] == [SLOTS] * WORKERS and stat["queued_requests"] == 0,
        "every_request_counted": outcomes["sent"]
        == outcomes["completed"] + outcomes["dropped"] + sum(failures.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--kill_every", type=float, default=30)
    args = parser.parse_args()
    import byzerllm

    with ray_cluster():
        result = run_chaos(byzerllm.ByzerLLM(), args.seconds, args.clients, args.kill_every)
    rows = [[k, v] for k, v in result.items() if k not in ("failures", "undocumented_failures", "stat_after")]
    rows += [[f"failed: {k}", v] for k, v in sorted(result["failures"].items())]
    rows.append(["stat after", json.dumps(result["stat_after"])])
    print_table("chaos: streaming clients while workers and the server die", ["measure", "value"], rows)
    print(f"wrote {write_result('chaos', result)}")


if __name__ == "__main__":
    main()
