"""64 concurrent streaming clients against `byzerllm serve` and the built-in model, for minutes.

The built-in model deployed on Ray without an ``infer_backend`` (the default for the shape: 1
worker with 64 slots and 2 threads is ``llama_server``, continuous batching; ``--workers 2
--concurrency 1 --threads 1`` is the earlier ``llama_cpp`` pool), `byzerllm serve` in its own
process, and CLIENTS asyncio clients that each stream chat completions of MAX_TOKENS tokens back to
back for SECONDS. Reported: requests, errors (target 0), time to first token p50/p99 (it includes
any wait for a free slot), aggregate tokens/s, and the server's RSS at start and end (target:
within 10%).

    .venv/bin/python bench/server_load.py [--clients 64] [--seconds 120] [--max-tokens 32]
        [--workers 1] [--concurrency 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import time

import httpx
import psutil
from _common import BIN, print_table, ray_cluster, write_result

import byzerllm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_clients(
    url: str, model: str, clients: int, seconds: float, max_tokens: int, extra: dict | None = None
) -> dict:
    ttfts: list[float] = []
    tokens = requests = errors = 0
    error_samples: list[str] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient, c: int) -> None:
        nonlocal tokens, requests, errors
        n = 0
        while time.perf_counter() < stop:
            n += 1
            body = {
                "model": model,
                "stream": True,
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": f"Client {c}, request {n}: describe the sea."}],
                **(extra or {}),
            }
            start = time.perf_counter()
            first = None
            done_tokens = 0
            try:
                async with http.stream("POST", url, json=body) as r:
                    if r.status_code != 200:
                        errors += 1
                        error_samples.append(f"{r.status_code}: {(await r.aread())[:200]!r}")
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        event = json.loads(line[6:])
                        if "error" in event:
                            errors += 1
                            error_samples.append(str(event["error"])[:200])
                            break
                        if first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                            first = time.perf_counter() - start
                        if event.get("usage"):  # the last one seen (a stream may repeat it in a usage-only chunk)
                            done_tokens = event["usage"]["completion_tokens"]
                tokens += done_tokens
                requests += 1
                if first is not None:
                    ttfts.append(first)
            except httpx.HTTPError as exc:
                errors += 1
                error_samples.append(repr(exc)[:200])

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(http, c) for c in range(clients)))
    wall = time.perf_counter() - start
    ttfts.sort()
    return {
        "requests": requests,
        "errors": errors,
        "error_samples": error_samples[:5],
        "seconds": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p99_s": ttfts[max(0, int(len(ttfts) * 0.99) - 1)] if ttfts else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="worker_concurrency")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per worker")
    args = parser.parse_args()
    name, port = "bench_load", free_port()
    with ray_cluster():
        llm = byzerllm.ByzerLLM().setup_num_workers(args.workers).setup_worker_concurrency(args.concurrency)
        if llm.is_model_exist(name):
            llm.undeploy(name)
        # no infer_backend: the default for this shape (docs/deployment.md, Choosing the GGUF backend);
        # a short context per sequence, since an engine holds the KV cache of all of them at once
        meta = llm.deploy(
            model_path="builtin:smollm2", udf_name=name, infer_params={"n_threads": args.threads, "max_model_len": 512}
        )
        server = subprocess.Popen([str(BIN / "byzerllm"), "serve", "--port", str(port)])
        try:
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    httpx.get(base + "/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.3)
            proc = psutil.Process(server.pid)
            asyncio.run(run_clients(base + "/v1/chat/completions", name, 4, 5, 4))  # warm-up
            rss_start = proc.memory_info().rss
            result = asyncio.run(
                run_clients(base + "/v1/chat/completions", name, args.clients, args.seconds, args.max_tokens)
            )
            rss_end = proc.memory_info().rss
        finally:
            server.terminate()
            server.wait(timeout=30)
            llm.undeploy(name)
    growth = (rss_end - rss_start) / rss_start
    result.update(
        backend=meta["backend"],
        workers=args.workers,
        worker_concurrency=args.concurrency,
        threads_per_worker=args.threads,
        clients=args.clients,
        max_tokens=args.max_tokens,
        server_rss_start_mb=rss_start / 2**20,
        server_rss_end_mb=rss_end / 2**20,
        server_rss_growth=growth,
        targets={"errors": 0, "server_rss_growth": "<= 10%"},
        met={"errors": result["errors"] == 0, "server_rss_growth": abs(growth) <= 0.10},
    )
    print_table(
        f"{args.clients} streaming clients for {args.seconds:g}s against byzerllm serve ({meta['backend']}, "
        f"{args.workers} worker(s) x {args.concurrency} slots x {args.threads} threads)",
        ["requests", "errors", "TTFT p50 (s)", "TTFT p99 (s)", "tokens/s", "RSS start (MB)", "RSS end (MB)"],
        [
            [
                result["requests"],
                result["errors"],
                result["ttft_p50_s"],
                result["ttft_p99_s"],
                result["tokens_per_s"],
                result["server_rss_start_mb"],
                result["server_rss_end_mb"],
            ]
        ],
    )
    print("wrote", write_result("server_load", result))


if __name__ == "__main__":
    main()
