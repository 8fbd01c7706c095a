"""What relaying an engine's tokens through Ray costs, per token: one Ray generator per request (what
the runtime does) vs one multiplexed channel per worker and caller (a design not built yet).

``llama-server`` (the built-in model, ``--clients`` parallel sequences, 2 threads) generates; a Ray
actor reads ``--clients`` concurrent streams from it (raw server-sent events, ``json``) and relays
every token to this process, either
- per request: each request is a streaming generator of its tokens, or
- channel: requests start with a unary call, and one generator carries the ready tokens of every
  stream in each message;
and, as the reference, the same clients read llama-server directly. Reported per path: tokens/s,
the engine's CPU, and the CPU milliseconds per token of the relaying actor and of this process.
No byzerllm code is on the path: this isolates the Ray hop that bench/serving_throughput.py (b) pays.

    .venv/bin/python bench/stream_relay.py [--clients 16] [--seconds 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psutil
import ray
from _common import print_table, wait_ready, write_result
from server_load import free_port

from byzerllm.backends.llama_server import LlamaServerBackend, llama_server_binary, llama_server_command
from byzerllm.backends.models import resolve_model_path

MAX_TOKENS = 128


def tokens_of(http: httpx.Client, url: str, client: int) -> Iterator[str]:
    """The text pieces of one streamed chat completion from llama-server."""
    body = {
        "model": "default",
        "stream": True,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": f"Client {client}: describe the sea."}],
    }
    with http.stream("POST", url, json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices") or ():
                    if text := (choice.get("delta") or {}).get("content"):
                        yield text


class Relay:
    """The relaying actor: the two ways of sending tokens to its caller."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))
        self.ready: queue.SimpleQueue = queue.SimpleQueue()

    def pid(self) -> int:
        return os.getpid()

    def stream(self, client: int) -> Iterator[str]:
        yield from tokens_of(self.http, self.url, client)

    def start(self, client: int) -> None:
        def read() -> None:
            try:
                for text in tokens_of(self.http, self.url, client):
                    self.ready.put((client, text))
            finally:
                self.ready.put((client, None))

        threading.Thread(target=read, daemon=True).start()

    def channel(self) -> Iterator[list[tuple[int, str | None]]]:
        while True:
            batch = [self.ready.get()]
            while True:
                try:
                    batch.append(self.ready.get_nowait())
                except queue.Empty:
                    break
            yield batch


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def run_path(path: str, url: str, engine: psutil.Process, clients: int, seconds: float) -> dict:
    relay = ray.remote(max_concurrency=4 * clients)(Relay).remote(url)
    actor = psutil.Process(ray.get(relay.pid.remote()))
    me = psutil.Process()
    counts = {"tokens": 0, "errors": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def count(n: int = 1, key: str = "tokens") -> None:
        with lock:
            counts[key] += n

    if path == "direct":
        http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=4 * clients))

        def one(client: int) -> None:
            for _ in tokens_of(http, url, client):
                count()

    elif path == "per request":

        def one(client: int) -> None:
            for ref in relay.stream.options(num_returns="streaming").remote(client):
                ray.get(ref)
                count()

    else:
        done = {c: threading.Event() for c in range(clients)}

        def demux() -> None:
            try:
                for ref in relay.channel.options(num_returns="streaming").remote():
                    for client, text in ray.get(ref):
                        if text is None:
                            done[client].set()
                        else:
                            count()
            except ray.exceptions.RayActorError:  # the path's end: the relay was killed
                return

        threading.Thread(target=demux, daemon=True).start()

        def one(client: int) -> None:
            done[client].clear()
            ray.get(relay.start.remote(client))
            done[client].wait()

    def user(client: int, one: Callable[[int], None] = one) -> None:
        while time.monotonic() < stop:
            try:
                one(client)
            except httpx.HTTPError:  # llama-server closes kept-alive connections now and then
                count(key="errors")

    before = (cpu_seconds(actor), cpu_seconds(me), cpu_seconds(engine))
    start = time.monotonic()
    threads = [threading.Thread(target=user, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    after = (cpu_seconds(actor), cpu_seconds(me), cpu_seconds(engine))
    ray.kill(relay)
    n = max(counts["tokens"], 1)
    return {
        "tokens_per_s": counts["tokens"] / wall,
        "errors": counts["errors"],
        "relay_cpu_ms_per_token": 1e3 * (after[0] - before[0]) / n if path != "direct" else 0.0,
        "caller_cpu_ms_per_token": 1e3 * (after[1] - before[1]) / n,
        "engine_cpu_percent": 100 * (after[2] - before[2]) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="each path this many times, interleaved")
    args = parser.parse_args()
    cfg = LlamaServerBackend.check_options({"n_threads": 2, "parallel": args.clients})
    port = free_port()
    cmd = llama_server_command(llama_server_binary(), resolve_model_path("builtin:smollm2"), port, cfg)
    engine = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: dict[str, list[dict]] = {}
    try:
        wait_ready(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for _ in range(args.rounds):
            for path in ("direct", "per request", "channel"):
                runs.setdefault(path, []).append(
                    run_path(path, url, psutil.Process(engine.pid), args.clients, args.seconds)
                )
    finally:
        ray.shutdown()
        engine.terminate()
        engine.wait(timeout=30)
    results = {
        path: {key: sum(r[key] for r in rs) / len(rs) for key in rs[0]} | {"runs": rs} for path, rs in runs.items()
    }
    print_table(
        f"{args.clients} streams x {MAX_TOKENS} tokens from llama-server, relayed through a Ray actor "
        f"({args.seconds:g}s x {args.rounds} rounds, means)",
        ["path", "tokens/s", "errors", "relay CPU ms/token", "caller CPU ms/token", "engine CPU %"],
        [
            [
                k,
                r["tokens_per_s"],
                r["errors"],
                r["relay_cpu_ms_per_token"],
                r["caller_cpu_ms_per_token"],
                r["engine_cpu_percent"],
            ]
            for k, r in results.items()
        ],
    )
    print("wrote", write_result("stream_relay", {"clients": args.clients, "seconds": args.seconds, "results": results}))


if __name__ == "__main__":
    main()
