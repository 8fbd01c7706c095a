"""What our server adds in front of an upstream, vs LiteLLM's proxy in front of the same one.

One run starts a fixed-answer OpenAI-compatible upstream (``bench/_upstream.py``), then:
- ours: ``byzerllm serve`` -> a ``saas/openai`` deployment on Ray (2 workers x 32 concurrent
  requests) -> the upstream;
- LiteLLM: its proxy (installed in its own virtual environment, ``bench/.venvs/litellm``, since
  it pins other versions of our dependencies) -> the same upstream.
Measured with the same clients: the latency each proxy adds per request (median of sequential
non-streamed requests, minus the upstream's own median) and requests/s at concurrency 64 (from
``bench/_load.py``, a separate aiohttp process, so the load takes little CPU from the proxies).
Targets (issue): our added latency <= 0.5x LiteLLM's; our requests/s >= 2x LiteLLM's.

    .venv/bin/python bench/proxy_overhead.py [--requests 400] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import BIN, print_table, ray_cluster, wait_ready, write_result

import byzerllm

HERE = Path(__file__).resolve().parent
LITELLM = HERE / ".venvs" / "litellm"
ROUNDS = 4
BODY = {"model": "fixed", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_litellm() -> Path:
    exe = LITELLM / "bin" / "litellm"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM)], check=True)
        subprocess.run([str(LITELLM / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return exe


def sequential(url: str, headers: dict, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30, headers=headers) as http:
        for i in range(n + 10):
            start = time.perf_counter()
            r = http.post(url, json=BODY)
            r.raise_for_status()
            if i >= 10:  # warm-up
                out.append(time.perf_counter() - start)
    return out


def load(url: str, headers: dict, concurrency: int, seconds: float) -> tuple[int, int, float]:
    """``(requests done, errors, seconds)`` at ``concurrency`` from a separate load process."""
    cmd = [
        sys.executable,
        str(HERE / "_load.py"),
        url,
        "--body",
        json.dumps(BODY),
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
    ] + [arg for k, v in headers.items() for arg in ("--header", f"{k}: {v}")]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return out["done"], out["errors"], out["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="sequential requests per target, in all rounds")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    litellm = ensure_litellm()
    up_port, our_port, lite_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen] = []
    results: dict = {}
    try:
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_upstream.py"), "--port", str(up_port)]))
        upstream = f"http://127.0.0.1:{up_port}/v1"
        wait_ready(upstream + "/models", ok_below=500)
        config = Path(tempfile.mkdtemp()) / "litellm.yaml"
        config.write_text(
            f"model_list:\n  - model_name: fixed\n    litellm_params:\n      model: openai/fixed\n"
            f"      api_base: {upstream}\n      api_key: sk-upstream\n"
        )
        env = {**os.environ, "LITELLM_MASTER_KEY": "sk-bench", "LITELLM_LOG": "ERROR"}
        procs.append(
            subprocess.Popen(
                [
                    str(litellm),
                    "--config",
                    str(config),
                    "--port",
                    str(lite_port),
                    "--host",
                    "127.0.0.1",
                    "--num_workers",
                    "1",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        with ray_cluster():
            llm = byzerllm.ByzerLLM().setup_num_workers(2).setup_worker_concurrency(32)
            if llm.is_model_exist("fixed"):
                llm.undeploy("fixed")
            llm.deploy(
                model_path="",
                pretrained_model_type="saas/openai",
                udf_name="fixed",
                infer_params={
                    "saas.base_url": upstream,
                    "saas.model": "fixed",
                    "saas.api_key": "sk-upstream",
                    "saas.max_retries": 0,
                },
            )
            try:
                procs.append(subprocess.Popen([str(BIN / "byzerllm"), "serve", "--port", str(our_port)]))
                headers = {"Authorization": "Bearer sk-bench"}
                targets = {
                    "upstream (direct)": (upstream + "/chat/completions", {}),
                    "byzerllm serve": (f"http://127.0.0.1:{our_port}/v1/chat/completions", {}),
                    "LiteLLM proxy": (f"http://127.0.0.1:{lite_port}/v1/chat/completions", headers),
                }
                wait_ready(f"http://127.0.0.1:{our_port}/health", ok_below=500)
                wait_ready(f"http://127.0.0.1:{lite_port}/health/liveliness", seconds=180, ok_below=500)
                # sequential latency in interleaved rounds, so that machine noise hits every target alike
                lat: dict[str, list[float]] = {label: [] for label in targets}
                for _ in range(ROUNDS):
                    for label, (url, hdrs) in targets.items():
                        lat[label] += sequential(url, hdrs, args.requests // ROUNDS)
                for label, (url, hdrs) in targets.items():
                    done, errors, wall = load(url, hdrs, args.concurrency, args.seconds)
                    xs = sorted(lat[label])
                    results[label] = {
                        "median_latency_ms": statistics.median(xs) * 1e3,
                        "p99_latency_ms": xs[int(len(xs) * 0.99) - 1] * 1e3,
                        "requests_per_s": done / wall,
                        "errors": errors,
                    }
            finally:
                llm.undeploy("fixed")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    base = results["upstream (direct)"]["median_latency_ms"]
    for r in results.values():
        r["added_latency_ms"] = r["median_latency_ms"] - base
    ours, lite = results["byzerllm serve"], results["LiteLLM proxy"]
    ratio_latency = ours["added_latency_ms"] / lite["added_latency_ms"]
    ratio_rps = ours["requests_per_s"] / lite["requests_per_s"]
    print_table(
        f"Proxy overhead in front of a fixed-answer upstream ({args.requests} sequential requests in "
        f"{ROUNDS} interleaved rounds; "
        f"concurrency {args.concurrency} for {args.seconds:g}s)",
        ["target", "median latency (ms)", "added (ms)", "p99 (ms)", "requests/s", "errors"],
        [
            [k, r["median_latency_ms"], r["added_latency_ms"], r["p99_latency_ms"], r["requests_per_s"], r["errors"]]
            for k, r in results.items()
        ],
    )
    print(
        f"added latency ours/LiteLLM = {ratio_latency:.2f} (target <= 0.5); "
        f"requests/s ours/LiteLLM = {ratio_rps:.2f} (target >= 2)"
    )
    print(
        "wrote",
        write_result(
            "proxy_overhead",
            {
                "requests": args.requests,
                "seconds": args.seconds,
                "concurrency": args.concurrency,
                "results": results,
                "added_latency_ratio": ratio_latency,
                "requests_per_s_ratio": ratio_rps,
                "targets": {"added_latency_ratio": "<= 0.5", "requests_per_s_ratio": ">= 2"},
                "met": {"added_latency_ratio": ratio_latency <= 0.5, "requests_per_s_ratio": ratio_rps >= 2},
            },
        ),
    )


if __name__ == "__main__":
    main()
