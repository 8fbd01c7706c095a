"""Continuous batching through an engine process vs the llama.cpp pool vs llama-server alone.

``--clients`` (16) concurrent streaming clients ask for ``--max-tokens`` (128) tokens each
(``ignore_eos``) from the built-in model, with the same 2 CPU threads, on three paths:
- (a) the ``llama_cpp`` pool, 2 workers x 1 thread, behind ``byzerllm serve``;
- (b) the ``llama_server`` engine backend on Ray, 1 worker running llama-server with 16 parallel
  sequences and 2 threads, behind ``byzerllm serve`` (the server on the worker's node reads the
  engine's streams itself: runtime/ray/local_streams.py);
- (c) the same llama-server binary with the same flags, called directly (the reference).
All three are up at once on one Ray cluster (an idle path takes no CPU) and are measured in turn,
``--rounds`` (2) times ``--seconds`` (60) each, so that the machine's drift over the run falls on
every path alike; tokens/s is over all rounds, each round is kept. Targets (issue 17): (b) >= 0.95x
(c) and >= 1.5x (a) in tokens/s.

Then one client alone (``--single-seconds``), 1 worker x 2 threads on each backend, for the choice of
the default backend (docs/deployment.md, Choosing the GGUF backend).

    .venv/bin/python bench/serving_throughput.py [--clients 16] [--seconds 60] [--rounds 2] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
from collections.abc import Iterator

from _common import BIN, print_table, ray_cluster, wait_ready, write_result
from server_load import free_port, run_clients

import byzerllm
from byzerllm.backends.llama_server import LlamaServerBackend, llama_server_binary, llama_server_command
from byzerllm.backends.models import resolve_model_path

PATHS = {
    "a": "(a) llama_cpp pool, 2 workers x 1 thread",
    "b": "(b) llama_server engine on Ray, 16 parallel x 2 threads",
    "c": "(c) llama-server directly, same flags",
}
USAGE = {"stream_options": {"include_usage": True}}  # llama-server sends usage only when asked


def measure(url: str, model: str, args) -> dict:
    return asyncio.run(run_clients(url, model, args.clients, args.seconds, args.max_tokens, USAGE))


def warm(url: str, model: str) -> None:
    asyncio.run(run_clients(url, model, 4, 5, 4, USAGE))


@contextlib.contextmanager
def server() -> Iterator[str]:
    """``byzerllm serve`` for the deployments of the cluster; yields its chat completions URL."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "byzerllm"), "serve", "--port", str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def deployed(name: str, backend: str, workers: int, concurrency: int, options: dict) -> Iterator[None]:
    llm = byzerllm.ByzerLLM().setup_infer_backend(backend).setup_num_workers(workers)
    llm.setup_worker_concurrency(concurrency)
    llm.deploy(model_path="builtin:smollm2", udf_name=name, infer_params=options)
    try:
        yield
    finally:
        llm.undeploy(name)


@contextlib.contextmanager
def engine_alone(parallel: int) -> Iterator[str]:
    """(c): llama-server with (b)'s flags, started here; yields its chat completions URL."""
    cfg = LlamaServerBackend.check_options({"n_threads": 2, "parallel": parallel})
    port = free_port()
    cmd = llama_server_command(llama_server_binary(), resolve_model_path("builtin:smollm2"), port, cfg)
    engine = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        engine.terminate()
        engine.wait(timeout=30)


def combined(runs: list[dict]) -> dict:
    """One path's rounds together: tokens/s over all of them, the median round's TTFT p50, the
    worst round's p99."""
    tokens, seconds = sum(r["tokens"] for r in runs), sum(r["seconds"] for r in runs)
    return {
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "error_samples": [e for r in runs for e in r["error_samples"]][:5],
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "ttft_p50_s": statistics.median(r["ttft_p50_s"] for r in runs if r["ttft_p50_s"] is not None),
        "ttft_p99_s": max(r["ttft_p99_s"] for r in runs if r["ttft_p99_s"] is not None),
        "rounds_tokens_per_s": [r["tokens_per_s"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60, help="seconds of each round of each path")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--single-seconds", type=float, default=30, help="the one-client runs (0: skip)")
    args = parser.parse_args()
    single: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {k: [] for k in PATHS}
    with ray_cluster():
        with (
            deployed("bench_pool", "llama_cpp", 2, 1, {"n_threads": 1}),
            deployed("bench_engine", "llama_server", 1, args.clients, {"n_threads": 2}),
            server() as url,
            engine_alone(args.clients) as direct_url,
        ):
            targets = {"a": (url, "bench_pool"), "b": (url, "bench_engine"), "c": (direct_url, "default")}
            for target in targets.values():
                warm(*target)
            for i in range(args.rounds):
                for key, target in targets.items():
                    runs[key].append(measure(*target, args))
                    print(f"round {i + 1}: {PATHS[key]}: {runs[key][-1]['tokens_per_s']:.1f} tokens/s", flush=True)
        if args.single_seconds:
            one = argparse.Namespace(**{**vars(args), "seconds": args.single_seconds, "clients": 1})
            for backend in ("llama_cpp", "llama_server"):
                with deployed("bench_one", backend, 1, 1, {"n_threads": 2}), server() as url:
                    warm(url, "bench_one")
                    single[f"{backend}, 1 worker x 2 threads, 1 client"] = measure(url, "bench_one", one)
    results = {PATHS[k]: combined(r) for k, r in runs.items()}
    a, b, c = (r["tokens_per_s"] for r in results.values())
    print_table(
        f"{args.clients} streaming clients x {args.max_tokens} tokens, built-in model, "
        f"{args.rounds} rounds x {args.seconds:g}s each",
        ["path", "requests", "errors", "tokens/s", "rounds", "TTFT p50 (s)", "TTFT p99 (s)"],
        [
            [
                k,
                r["requests"],
                r["errors"],
                r["tokens_per_s"],
                ", ".join(f"{x:.1f}" for x in r["rounds_tokens_per_s"]),
                r["ttft_p50_s"],
                r["ttft_p99_s"],
            ]
            for k, r in results.items()
        ],
    )
    if single:
        print_table(
            f"One client alone, {args.max_tokens} tokens a request, {args.single_seconds:g}s each",
            ["path", "requests", "tokens/s", "TTFT p50 (s)", "TTFT p99 (s)"],
            [[k, r["requests"], r["tokens_per_s"], r["ttft_p50_s"], r["ttft_p99_s"]] for k, r in single.items()],
        )
    # c_vs_a: what the engine gives with no relay at all, the ceiling of b_vs_a
    ratios = {"b_vs_c": b / c, "b_vs_a": b / a, "c_vs_a": c / a}
    print(
        f"(b)/(c) {ratios['b_vs_c']:.2f} (target >= 0.95), (b)/(a) {ratios['b_vs_a']:.2f} (target >= 1.5), "
        f"(c)/(a) {ratios['c_vs_a']:.2f}"
    )
    path = write_result(
        "serving_throughput",
        {
            "clients": args.clients,
            "max_tokens": args.max_tokens,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "results": results,
            "single_client": single,
            "ratios": ratios,
            "targets": {"b_vs_c": ">= 0.95", "b_vs_a": ">= 1.5"},
            "met": {"b_vs_c": ratios["b_vs_c"] >= 0.95, "b_vs_a": ratios["b_vs_a"] >= 1.5},
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
