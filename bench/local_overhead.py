"""What the Ray deployment costs over llama-cpp-python called in-process.

The same prompts and max_tokens, one llama.cpp thread on each side, runs interleaved:
- ours: the built-in model deployed on Ray (1 worker), through ByzerLLM.stream_chat_oai and
  ByzerLLM.chat_oai;
- reference: llama_cpp.Llama in this process, create_chat_completion (stream and not).
Both generate exactly MAX_TOKENS tokens (ours with ignore_eos, the reference with the end-of-turn
tokens' logits biased away). Reported: time to first token (TTFT), decode tokens/s
((tokens - 1) / (last token time - first token time)) and end-to-end tokens/s of a non-streamed
call, medians over RUNS runs. Targets (issue): tokens/s ratio >= 0.95, TTFT difference <= 15 ms.

    .venv/bin/python bench/local_overhead.py [--runs 15] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import time

from _common import median, print_table, ray_cluster, write_result

import byzerllm
from byzerllm.backends.models import resolve_model_path

PROMPTS = [
    "Write a short story about a lighthouse keeper, number {i}.",
    "Explain how bread is made, in detail, variant {i}.",
]


def run_ours(llm, name, messages, max_tokens):
    stamps = []
    start = time.perf_counter()
    for delta, meta in llm.stream_chat_oai(
        messages, model=name, delta_mode=True, llm_config={"max_length": max_tokens, "ignore_eos": True}
    ):
        if delta:
            stamps.append(time.perf_counter() - start)
    n = meta.generated_tokens_count
    start = time.perf_counter()
    resp = llm.chat_oai(messages, model=name, llm_config={"max_length": max_tokens, "ignore_eos": True})[0]
    e2e = resp.metadata["generated_tokens_count"] / (time.perf_counter() - start)
    return stamps[0], (n - 1) / (stamps[-1] - stamps[0]), e2e, n


def run_direct(model, messages, max_tokens, bias):
    stamps = []
    n = 0
    start = time.perf_counter()
    for chunk in model.create_chat_completion(messages, max_tokens=max_tokens, stream=True, logit_bias=bias):
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter() - start)
    start = time.perf_counter()
    out = model.create_chat_completion(messages, max_tokens=max_tokens, logit_bias=bias)
    n = out["usage"]["completion_tokens"]
    e2e = n / (time.perf_counter() - start)
    return stamps[0], (len(stamps) - 1) / (stamps[-1] - stamps[0]), e2e, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    import llama_cpp

    name = "bench_local_overhead"
    with ray_cluster():
        llm = byzerllm.ByzerLLM()
        if llm.is_model_exist(name):
            llm.undeploy(name)
        llm.setup_num_workers(1).deploy(model_path="builtin:smollm2", udf_name=name, infer_params={"n_threads": 1})
        direct = llama_cpp.Llama(
            resolve_model_path("builtin:smollm2"), n_ctx=4096, n_threads=1, n_threads_batch=1, verbose=False
        )
        bias = {t: -1e9 for t in range(direct.n_vocab()) if llama_cpp.llama_vocab_is_eog(direct._model.vocab, t)}
        ours, ref = [], []
        try:
            for i in range(args.runs + 1):  # run 0 warms both up and is not counted
                messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)].format(i=i)}]
                o = run_ours(llm, name, messages, args.max_tokens)
                d = run_direct(direct, messages, args.max_tokens, bias)
                if i:
                    ours.append(o)
                    ref.append(d)
        finally:
            llm.undeploy(name)
            direct.close()

    def col(rows, k):
        return median([r[k] for r in rows])

    ttft_o, ttft_d = col(ours, 0) * 1000, col(ref, 0) * 1000
    dec_o, dec_d = col(ours, 1), col(ref, 1)
    e2e_o, e2e_d = col(ours, 2), col(ref, 2)
    result = {
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "ours": {
            "ttft_ms": ttft_o,
            "decode_tokens_per_s": dec_o,
            "e2e_tokens_per_s": e2e_o,
            "tokens": [r[3] for r in ours],
        },
        "llama_cpp_in_process": {
            "ttft_ms": ttft_d,
            "decode_tokens_per_s": dec_d,
            "e2e_tokens_per_s": e2e_d,
            "tokens": [r[3] for r in ref],
        },
        "decode_tokens_per_s_ratio": dec_o / dec_d,
        "e2e_tokens_per_s_ratio": e2e_o / e2e_d,
        "ttft_difference_ms": ttft_o - ttft_d,
        "targets": {"tokens_per_s_ratio": ">= 0.95", "ttft_difference_ms": "<= 15"},
    }
    result["met"] = {
        "tokens_per_s_ratio": min(result["decode_tokens_per_s_ratio"], result["e2e_tokens_per_s_ratio"]) >= 0.95,
        "ttft_difference_ms": result["ttft_difference_ms"] <= 15,
    }
    print_table(
        f"Ray deployment vs llama-cpp-python in-process (median of {args.runs}, {args.max_tokens} tokens)",
        ["metric", "byzerllm on Ray", "llama.cpp in-process", "ours / ref or diff", "target"],
        [
            ["TTFT (ms)", ttft_o, ttft_d, f"{ttft_o - ttft_d:+.1f} ms", "<= +15 ms"],
            ["decode tokens/s (stream)", dec_o, dec_d, f"{dec_o / dec_d:.3f}", ">= 0.95"],
            ["end-to-end tokens/s (chat_oai)", e2e_o, e2e_d, f"{e2e_o / e2e_d:.3f}", ">= 0.95"],
        ],
    )
    print("wrote", write_result("local_overhead", result))


if __name__ == "__main__":
    main()
