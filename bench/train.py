"""Training throughput: the same LoRA fine-tune through a byzerllm job on Ray Train vs TRL's
``SFTTrainer`` run directly, in one run.

The built-in model, the same synthetic chat rows, the same hyper-parameters and ``--steps``
optimizer steps, 2 CPU threads in all:
- direct: ``SFTTrainer`` in a plain process (the trainer the job builds, without Ray), 2 threads;
- (1) a job with 1 Ray Train worker x 2 CPUs;
- (2) a job with 2 workers x 1 CPU (DDP over gloo; each step trains 2 batches).
Tokens/s is the trained tokens (TRL's count, all workers) over the training time, measured the same
way in all three by the job's progress callback; wall time includes start-up and checkpoints.
Peak RSS is the largest resident set of one training process. Target (issue 14): (1) >= 0.9x direct.

    .venv/bin/python bench/train.py [--steps 20] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _common import print_table, ray_cluster, write_result

from byzerllm.training import jobs
from byzerllm.training.config import training_config

SUBJECTS = ["rivers", "mountains", "cities", "stars", "forests", "islands", "deserts", "lakes"]


def write_data(folder: Path, rows: int) -> None:
    with (folder / "data.jsonl").open("w") as f:
        for i in range(rows):
            subject = SUBJECTS[i % len(SUBJECTS)]
            q = f"Tell me one short fact about {subject}, number {i}."
            a = f"Fact {i}: {subject} of the land of Zubrowka are counted every spring by the people of Lutz."
            f.write(json.dumps({"conversation": [{"human": q, "assistant": a}]}) + "\n")


DIRECT = """
import json, resource, sys, time
from byzerllm.training.loop import build_trainer
spec = json.loads(sys.argv[1])
start = time.monotonic()
trainer, _ = build_trainer(spec, on_ray=False)
trainer.train()
wall = time.monotonic() - start
print(json.dumps({"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def direct(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", DIRECT, json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    progress = json.loads((Path(spec["dir"]) / "progress.json").read_text())
    return {"tokens_per_s": progress["tokens_per_s"], "steps": progress["step"], **out}


def through_job(name: str, data: Path, stage: Path, params: dict, workers: int) -> dict:
    peak = 0.0
    done = threading.Event()

    def watch() -> None:  # the largest training process (Ray Train's workers)
        nonlocal peak
        found: list[psutil.Process] = []
        while not done.is_set():
            if not found:  # scanning every process costs CPU the job needs: find the workers once
                found = [
                    p for p in psutil.process_iter(["cmdline"]) if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])
                ]
            for p in found:
                try:
                    peak = max(peak, p.memory_info().rss / 2**20)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    jobs.start_job(
        name, "sft", str(data), "builtin:smollm2", str(stage), num_workers=workers, num_cpus=1.99,
        model_params=params, gguf=False,
    )  # fmt: skip
    status = jobs.wait_job(name, timeout=3600)
    wall = time.monotonic() - start
    done.set()
    watcher.join()
    if status["state"] != "succeeded":
        raise RuntimeError(f"{name}: {status}")
    return {"tokens_per_s": status["tokens_per_s"], "steps": status["step"], "wall_s": wall, "peak_rss_mb": peak}


def run_all(root: Path, params: dict) -> dict[str, dict]:
    """The direct run and both jobs on the same data under ``root``."""
    data = root / "data"
    data.mkdir()
    write_data(data, 256)
    stamp = time.strftime("%H%M%S")
    spec = jobs.JobSpec(
        name="direct", kind="sft", model_path="builtin:smollm2", data_path=str(data), dir=str(root / "direct"),
        config=training_config(params).model_dump(), cpus_per_worker=2,
    )  # fmt: skip
    Path(spec.dir).mkdir()
    results = {"direct: TRL SFTTrainer, no Ray, 2 threads": direct(spec.model_dump())}
    with ray_cluster():
        results["(1) job on Ray Train, 1 worker x 2 CPUs"] = through_job(f"bench1_{stamp}", data, root, params, 1)
        results["(2) job on Ray Train, 2 workers x 1 CPU"] = through_job(f"bench2_{stamp}", data, root, params, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    params = {
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-3,
        "lora_rank": 16,
        "lora_alpha": 32,
        "max_seq_length": 128,
        "save_steps": args.steps,
        "logging_steps": 5,
    }
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))  # jobs, checkpoints, adapters
    results = run_all(root, params)  # a failed run leaves its folder, with the jobs' logs
    shutil.rmtree(root)
    base = results["direct: TRL SFTTrainer, no Ray, 2 threads"]["tokens_per_s"]
    rows = [
        [k, r["steps"], f"{r['tokens_per_s']:.1f}", f"{r['tokens_per_s'] / base:.2f}", f"{r['wall_s']:.1f}",
         f"{r['peak_rss_mb']:.0f}"]
        for k, r in results.items()
    ]  # fmt: skip
    print_table(
        f"LoRA SFT of the built-in model, {args.steps} steps x batch {args.batch_size}/worker, 128 tokens max",
        ["run", "steps", "tokens/s", "vs direct", "wall (s)", "peak RSS (MB)"],
        rows,
    )
    ratio = results["(1) job on Ray Train, 1 worker x 2 CPUs"]["tokens_per_s"] / base
    print(f"(1)/direct {ratio:.2f} (target >= 0.9)")
    path = write_result(
        "train",
        {"steps": args.steps, "batch_size": args.batch_size, "results": results, "job1_vs_direct": ratio,
         "target": {"job1_vs_direct": ">= 0.9"}},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
