"""What a ``saas/openai`` deployment adds per request, vs the ``openai`` client calling the same
upstream directly.

One run starts a fixed-answer OpenAI-compatible upstream (``bench/_upstream.py``: no model, it
answers at once), deploys ``saas/openai`` in front of it on Ray (1 worker) and in this process
(``SimpleByzerLLM``), then sends the same sequential requests through each path, interleaved in
rounds so that machine noise hits every path alike:
- reference: ``openai.OpenAI(...).chat.completions.create`` straight to the upstream;
- ``ByzerLLM.chat_oai`` -> Ray pool -> worker -> upstream;
- ``SimpleByzerLLM.chat_oai`` -> in-process worker -> upstream;
and the same for streamed requests (time to the last chunk). Target (issue 6): the Ray path adds
<= 5 ms at p50.

    .venv/bin/python bench/saas_overhead.py [--requests 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import print_table, ray_cluster, wait_ready, write_result

import byzerllm

HERE = Path(__file__).resolve().parent
ASK = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="requests per path (in all rounds)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import openai

    port = free_port()
    upstream_proc = subprocess.Popen([sys.executable, str(HERE / "_upstream.py"), "--port", str(port)])
    upstream = f"http://127.0.0.1:{port}/v1"
    params = {"saas.base_url": upstream, "saas.model": "fixed", "saas.api_key": "sk-bench"}
    samples: dict[str, list[float]] = {}
    try:
        wait_ready(upstream + "/models")
        direct = openai.OpenAI(base_url=upstream, api_key="sk-bench", max_retries=0)
        simple = byzerllm.SimpleByzerLLM()
        simple.deploy(model_path="", pretrained_model_type="saas/openai", udf_name="fixed", infer_params=params)
        with ray_cluster():
            llm = byzerllm.ByzerLLM().setup_num_workers(1).setup_worker_concurrency(4)
            if llm.is_model_exist("saas_bench"):
                llm.undeploy("saas_bench")
            llm.deploy(model_path="", pretrained_model_type="saas/openai", udf_name="saas_bench", infer_params=params)
            try:
                paths: dict[str, Callable[[], object]] = {
                    "openai client (direct)": lambda: direct.chat.completions.create(model="fixed", messages=ASK),
                    "ByzerLLM on Ray": lambda: llm.chat_oai(ASK, model="saas_bench"),
                    "SimpleByzerLLM": lambda: simple.chat_oai(ASK, model="fixed"),
                    "openai client (direct), stream": lambda: list(
                        direct.chat.completions.create(model="fixed", messages=ASK, stream=True)
                    ),
                    "ByzerLLM on Ray, stream": lambda: list(llm.stream_chat_oai(ASK, model="saas_bench")),
                    "SimpleByzerLLM, stream": lambda: list(simple.stream_chat_oai(ASK, model="fixed")),
                }
                for fn in paths.values():  # warm-up: connections, imports, Ray handles
                    timed(fn, 20)
                per_round = max(args.requests // args.rounds, 1)
                for _ in range(args.rounds):
                    for label, fn in paths.items():
                        samples.setdefault(label, []).extend(timed(fn, per_round))
                usage = llm.stat("saas_bench")
            finally:
                llm.undeploy("saas_bench")
        simple.close()
    finally:
        upstream_proc.terminate()
        upstream_proc.wait(timeout=20)
    results = {
        label: {
            "p50_ms": pct(xs, 0.5),
            "p99_ms": pct(xs, 0.99),
            "mean_ms": statistics.fmean(xs) * 1e3,
            "requests": len(xs),
        }
        for label, xs in samples.items()
    }
    for label, r in results.items():
        ref = results["openai client (direct)" + (", stream" if label.endswith("stream") else "")]
        r["added_p50_ms"] = r["p50_ms"] - ref["p50_ms"]
        r["added_p99_ms"] = r["p99_ms"] - ref["p99_ms"]
    added = results["ByzerLLM on Ray"]["added_p50_ms"]
    print_table(
        f"Per-request latency in front of a fixed-answer upstream ({args.requests} sequential requests per "
        f"path, {args.rounds} interleaved rounds)",
        ["path", "p50 (ms)", "p99 (ms)", "added p50 (ms)", "added p99 (ms)"],
        [[k, r["p50_ms"], r["p99_ms"], r["added_p50_ms"], r["added_p99_ms"]] for k, r in results.items()],
    )
    print(f"saas/openai on Ray adds {added:.2f} ms at p50 (target <= 5 ms)")
    print(
        "wrote",
        write_result(
            "saas_overhead",
            {
                "requests": args.requests,
                "rounds": args.rounds,
                "results": results,
                "ray_deployment_token_totals": {
                    k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                },
                "target": {"ray_added_p50_ms": "<= 5"},
                "met": {"ray_added_p50_ms": added <= 5},
            },
        ),
    )


if __name__ == "__main__":
    main()
