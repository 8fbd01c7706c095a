"""Retrieval quality and speed of document Q&A on the two real corpora, per retrieval mode.

For the Node.js API docs (English, all-MiniLM-L6-v2) and the Chinese Debian Reference PDF
(multilingual-e5-small), in one run: build time and chunks/s (embedding included), then recall@5
of vector-only, full-text-only and hybrid retrieval on the fixed evaluation sets in
tests/data/eval/, with the query latency (p50, embedding the query included). Hybrid is the
default convex fusion; ``hybrid_rrf`` (reciprocal rank fusion) is measured for reference. Target:
hybrid recall@5 at least as high as each single method on both sets.

    python bench/rag_recall.py [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, ray_cluster, write_result

ROOT = Path(__file__).resolve().parent.parent
CORPORA = {  # corpus -> (evaluation set, built-in embedding model)
    "nodejs-api": ("nodejs_api.jsonl", "builtin:all-minilm-l6-v2"),
    "debian-reference-zh": ("debian_reference_zh.jsonl", "builtin:multilingual-e5-small"),
}
# (label, search mode, hybrid fusion): the default hybrid fuses by convex combination; RRF for reference
MODES = (
    ("vector", "vector", "convex"),
    ("fulltext", "fulltext", "convex"),
    ("hybrid", "hybrid", "convex"),
    ("hybrid_rrf", "hybrid", "rrf"),
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2, help="workers of each embedding deployment")
    args = parser.parse_args()
    import byzerllm
    from byzerllm.rag import DocumentIndex

    sys.path.insert(0, str(ROOT))  # the corpus fetcher is a tool of the tests and benchmarks
    from byzerllm.rag.evaluation import answers, load_eval_set
    from tests.corpora import fetch_corpus

    rows, out = [], {}
    with ray_cluster(), tempfile.TemporaryDirectory() as store:
        llm = byzerllm.ByzerLLM()
        for corpus, (eval_file, model) in CORPORA.items():
            name = f"bench_{corpus.replace('-', '_')}"
            llm.setup_num_workers(args.workers)
            llm.deploy(
                model_path=model, pretrained_model_type="custom/emb", udf_name=name, infer_params={"n_threads": 1}
            )
            try:
                index = DocumentIndex(
                    corpus.replace("-", "_"), emb_model=name, base_dir=store, llm=llm, parallel=args.workers
                )
                start = time.perf_counter()
                stats = index.build(str(fetch_corpus(corpus)))
                build_s = time.perf_counter() - start
                items = load_eval_set(ROOT / "tests" / "data" / "eval" / eval_file)
                result = {
                    "model": model,
                    "chunks": stats.chunks,
                    "files": stats.files,
                    "build_s": round(build_s, 1),
                    "chunks_per_s": round(stats.chunks / build_s, 1),
                    "questions": len(items),
                }
                for label, mode, fusion in MODES:
                    latencies, missed = [], []
                    for item in items:
                        t = time.perf_counter()
                        hits = index.search(item["question"], 5, mode, fusion=fusion)
                        latencies.append((time.perf_counter() - t) * 1000)
                        if not any(answers(h, item) for h in hits):
                            missed.append(item["id"])
                    recall = 1 - len(missed) / len(items)
                    p50 = statistics.median(latencies)
                    result[label] = {"recall_at_5": round(recall, 3), "query_p50_ms": round(p50, 1), "missed": missed}
                    rows.append([corpus, label, recall, p50, stats.chunks / build_s])
                result["hybrid_at_least_each"] = all(
                    result["hybrid"]["recall_at_5"] >= result[m]["recall_at_5"] for m in ("vector", "fulltext")
                )
                out[corpus] = result
            finally:
                llm.undeploy(name)
    print_table("recall@5 per retrieval mode", ["corpus", "mode", "recall@5", "query p50 ms", "build chunks/s"], rows)
    print(write_result("rag_recall", {"workers": args.workers, "corpora": out}))


if __name__ == "__main__":
    main()
