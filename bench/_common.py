"""Helpers shared by the benchmarks: a Ray cluster for the run, result files, tables."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent


@contextlib.contextmanager
def ray_cluster():
    """Use the running Ray cluster, or start a local one for this run and stop it afterwards."""
    import byzerllm

    started = byzerllm.connect_cluster(start_local=True)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()
            subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True)


def wait_ready(url: str, headers: dict | None = None, seconds: float = 120, ok_below: int = 300) -> None:
    """Wait until ``url`` answers with a status below ``ok_below``; raise after ``seconds``."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < ok_below:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def write_result(name: str, payload: dict) -> Path:
    import llama_cpp
    import ray

    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "llama_cpp_python": llama_cpp.__version__,
        },
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)
