"""Aggregate tokens/s of a deployment with 1 vs 2 workers under 4 concurrent clients.

The built-in model on Ray, one llama.cpp thread per worker, worker_concurrency 1. Four client
threads each send REQUESTS streamed requests of exactly MAX_TOKENS tokens (ignore_eos) with
different prompts; aggregate tokens/s = all generated tokens / wall time. Target (issue):
2 workers >= 1.15x 1 worker. On a 2-core machine the ceiling is about 2x.

    .venv/bin/python bench/pool_scaling.py [--requests 4] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import threading
import time

from _common import print_table, ray_cluster, write_result

import byzerllm

CLIENTS = 4


def measure(llm, name: str, requests: int, max_tokens: int) -> dict:
    tokens = [0] * CLIENTS
    errors: list[str] = []

    def client(c: int) -> None:
        for r in range(requests):
            try:
                for _, meta in llm.stream_chat_oai(
                    [{"role": "user", "content": f"Client {c} asks question {r}: describe a city."}],
                    model=name,
                    delta_mode=True,
                    llm_config={"max_length": max_tokens, "ignore_eos": True},
                ):
                    pass
                tokens[c] += meta.generated_tokens_count
            except Exception as exc:  # counted and reported, not hidden
                errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    stat = llm.stat(name)
    return {
        "tokens": sum(tokens),
        "seconds": wall,
        "tokens_per_s": sum(tokens) / wall,
        "errors": errors,
        "requests_per_worker": stat["total_requests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    results = {}
    with ray_cluster():
        llm = byzerllm.ByzerLLM()
        for workers in (1, 2):
            name = f"bench_pool_{workers}"
            if llm.is_model_exist(name):
                llm.undeploy(name)
            llm.setup_num_workers(workers).deploy(
                model_path="builtin:smollm2", udf_name=name, infer_params={"n_threads": 1}
            )
            try:
                measure(llm, name, 1, 8)  # warm-up
                results[workers] = measure(llm, name, args.requests, args.max_tokens)
            finally:
                llm.undeploy(name)
    ratio = results[2]["tokens_per_s"] / results[1]["tokens_per_s"]
    print_table(
        f"Aggregate tokens/s, {CLIENTS} concurrent clients x {args.requests} requests x {args.max_tokens} tokens",
        ["workers", "tokens", "seconds", "tokens/s", "requests per worker", "errors"],
        [
            [w, r["tokens"], r["seconds"], r["tokens_per_s"], r["requests_per_worker"], len(r["errors"])]
            for w, r in results.items()
        ],
    )
    print(f"2 workers / 1 worker = {ratio:.3f} (target >= 1.15)")
    path = write_result(
        "pool_scaling",
        {
            "clients": CLIENTS,
            "requests_per_client": args.requests,
            "max_tokens": args.max_tokens,
            "one_worker": results[1],
            "two_workers": results[2],
            "ratio": ratio,
            "target": ">= 1.15",
            "met": ratio >= 1.15,
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
