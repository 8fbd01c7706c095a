"""Continuous batching through an engine process vs the llama.cpp pool vs llama-server alone.

In one run, ``--clients`` (16) concurrent streaming clients ask for ``--max-tokens`` (128) tokens
each (``ignore_eos``) for ``--seconds`` (60) against the built-in model, with the same 2 CPU threads:
- (a) the ``llama_cpp`` pool, 2 workers x 1 thread, behind ``byzerllm serve``;
- (b) the ``llama_server`` engine backend on Ray, 1 worker running llama-server with 16 parallel
  sequences and 2 threads, behind ``byzerllm serve``;
- (c) the same llama-server binary with the same flags, called directly (the reference).
Targets (issue 17): (b) >= 0.95x (c) and >= 1.5x (a) in tokens/s.

Then one client alone (``--single-seconds``), 1 worker x 2 threads on each backend, for the choice of
the default backend (docs/deployment.md, Choosing the GGUF backend).

    .venv/bin/python bench/serving_throughput.py [--clients 16] [--seconds 60] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess

from _common import BIN, print_table, ray_cluster, wait_ready, write_result
from server_load import free_port, run_clients

import byzerllm
from byzerllm.backends.llama_server import LlamaServerBackend, llama_server_binary, llama_server_command
from byzerllm.backends.models import resolve_model_path

NAME = "bench_serving"


def measure(base: str, model: str, args) -> dict:
    url = base + "/v1/chat/completions"
    usage = {"stream_options": {"include_usage": True}}  # llama-server sends usage only when asked
    asyncio.run(run_clients(url, model, 4, 5, 4, usage))  # warm-up
    return asyncio.run(run_clients(url, model, args.clients, args.seconds, args.max_tokens, usage))


def through_server(backend: str, workers: int, concurrency: int, options: dict, args) -> dict:
    llm = byzerllm.ByzerLLM().setup_infer_backend(backend).setup_num_workers(workers)
    llm.setup_worker_concurrency(concurrency)
    llm.deploy(model_path="builtin:smollm2", udf_name=NAME, infer_params=options)
    port = free_port()
    server = subprocess.Popen([str(BIN / "byzerllm"), "serve", "--port", str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/health")
        return measure(f"http://127.0.0.1:{port}", NAME, args)
    finally:
        server.terminate()
        server.wait(timeout=30)
        llm.undeploy(NAME)


def direct(args) -> dict:
    cfg = LlamaServerBackend.check_options({"n_threads": 2, "parallel": args.clients})
    port = free_port()
    cmd = llama_server_command(llama_server_binary(), resolve_model_path("builtin:smollm2"), port, cfg)
    engine = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health")
        return measure(f"http://127.0.0.1:{port}", "default", args)
    finally:
        engine.terminate()
        engine.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--single-seconds", type=float, default=30, help="the one-client runs (0: skip)")
    args = parser.parse_args()
    single: dict[str, dict] = {}
    with ray_cluster():
        results = {
            "(a) llama_cpp pool, 2 workers x 1 thread": through_server("llama_cpp", 2, 1, {"n_threads": 1}, args),
            "(b) llama_server engine on Ray, 16 parallel x 2 threads": through_server(
                "llama_server", 1, args.clients, {"n_threads": 2}, args
            ),
        }
        if args.single_seconds:
            one = argparse.Namespace(**{**vars(args), "seconds": args.single_seconds, "clients": 1})
            for backend in ("llama_cpp", "llama_server"):
                single[f"{backend}, 1 worker x 2 threads, 1 client"] = through_server(
                    backend, 1, 1, {"n_threads": 2}, one
                )
    results["(c) llama-server directly, same flags"] = direct(args)
    a, b, c = (r["tokens_per_s"] for r in results.values())
    print_table(
        f"{args.clients} streaming clients x {args.max_tokens} tokens, built-in model, {args.seconds:g}s each",
        ["path", "requests", "errors", "tokens/s", "TTFT p50 (s)", "TTFT p99 (s)"],
        [
            [k, r["requests"], r["errors"], r["tokens_per_s"], r["ttft_p50_s"], r["ttft_p99_s"]]
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
