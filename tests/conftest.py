"""Shared fixtures. Integration tests run on a real local Ray cluster that the session starts
with the byzerllm CLI and stops at the end (``ray stop``), and on the real built-in model."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from byzerllm.testing import build_tiny_llama, build_tiny_sd, build_tiny_vlm

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_cli(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed ``byzerllm`` command in a fresh process."""
    proc = subprocess.run(
        [str(BIN / "byzerllm"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"byzerllm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log, seconds: float = 60) -> None:
    """Wait until ``url`` answers 200; kill ``proc`` and raise with its log's tail otherwise."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{url} did not come up:\n{log() if callable(log) else log}")


@contextlib.contextmanager
def byzerllm_serve(*args: str) -> Iterator[str]:
    """``byzerllm serve`` with ``args`` on a free port, up once ``/health`` answers; yields its base
    URL and stops it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "byzerllm"), "serve", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", proc, "byzerllm serve did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def ray_cluster(request):
    """A fresh local Ray cluster started by ``byzerllm cluster start``; stopped afterwards, and its
    session folder (logs, spilled objects) removed when every test passed."""
    import ray

    probe = subprocess.run([str(BIN / "ray"), "status"], capture_output=True, text=True)
    if probe.returncode == 0:
        pytest.exit(
            "a Ray cluster is already running on this machine; stop it (byzerllm cluster stop) "
            "before running the tests, which start and stop their own",
            returncode=3,
        )
    proc = run_cli("cluster", "start", timeout=180, check=True)
    assert "Started a local Ray head" in proc.stderr
    import byzerllm

    byzerllm.connect_cluster()
    session = Path(ray._private.worker._global_node.get_session_dir_path())  # no public accessor in Ray
    try:
        yield ray
    finally:
        ray.shutdown()
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, text=True)
        if not request.session.testsfailed:
            shutil.rmtree(session, ignore_errors=True)


@pytest.fixture(scope="session")
def llm(ray_cluster):
    import byzerllm

    return byzerllm.ByzerLLM()


@pytest.fixture(scope="session")
def smollm2_chat(llm):
    """The built-in model deployed as ``test_chat`` with 2 workers (shared by the session)."""
    name = "test_chat"
    llm.setup_num_workers(2).setup_worker_concurrency(1)
    llm.deploy(model_path="builtin:smollm2", udf_name=name, infer_params={})
    llm.setup_num_workers(1)
    yield name
    if llm.is_model_exist(name):
        llm.undeploy(name)


@pytest.fixture(scope="module")
def faults():
    """The fault-injecting OpenAI-compatible upstream (tests/saas_upstream.py) on a free port;
    ``faults.url`` is its API root."""
    from .saas_upstream import Faults, serve

    state = Faults()
    with serve(state.app) as url:
        state.url = url + "/v1"
        yield state


# tiny random models of real architectures (byzerllm.testing), built once per session


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))
