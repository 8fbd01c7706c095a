"""The cluster pieces that need no cluster: whether a deployment fits the nodes, its placement
settings, model files through an object store (a dict stands in for Ray's at this one boundary),
and the cluster commands' bad input."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner

from byzerllm.cli.main import cli
from byzerllm.client import ByzerLLM
from byzerllm.errors import DeploymentError, InvalidRequestError
from byzerllm.runtime.ray import model_files
from byzerllm.runtime.ray.actors import worker_bundle
from byzerllm.runtime.ray.runtime import check_fit
from byzerllm.runtime.spec import DeploymentSpec

HEAD = {"CPU": 2.0, "memory": 1e10, "node:__internal_head__": 1.0}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0, "big_node": 1.0}


def spec(**kw) -> DeploymentSpec:
    return DeploymentSpec(name="m", backend="echo", model_path="x", **kw)


def test_a_fitting_deployment_passes():
    check_fit(spec(num_workers=2, cpus_per_worker=1, placement="spread"), [HEAD, GPU_NODE])
    check_fit(spec(num_workers=1, gpus_per_worker=1, resources={"big_node": 1}), [HEAD, GPU_NODE])


@pytest.mark.parametrize(
    ("settings", "param", "words"),
    [
        ({"num_workers": 3, "gpus_per_worker": 1}, "gpus_per_worker", "needs 3 GPU (3 workers x 1); the cluster has 1"),
        ({"num_workers": 20, "cpus_per_worker": 1}, "cpus_per_worker", "needs 20 CPU"),
        ({"resources": {"gpu_box": 1}}, "resources", "needs resource 'gpu_box', which no node"),
        ({"resources": {"big_node": 1}, "num_workers": 2}, "resources", "needs 2 big_node"),
        ({"cpus_per_worker": 9}, "cpus_per_worker", "no node has room for one worker"),
    ],
)
def test_a_deployment_that_cannot_fit_names_the_short_resource(settings, param, words):
    with pytest.raises(DeploymentError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        check_fit(spec(**settings), [HEAD, GPU_NODE])
    assert info.value.param == param


def test_the_missing_resource_error_lists_what_the_nodes_declare():
    with pytest.raises(DeploymentError) as info:
        check_fit(spec(resources={"gpu_box": 1}), [HEAD, GPU_NODE])
    assert "big_node" in str(info.value) and "node:" not in str(info.value)


def test_bundles_are_never_empty_and_carry_custom_resources():
    assert worker_bundle(spec(cpus_per_worker=0)) == {"CPU": 0.001}
    assert worker_bundle(spec(cpus_per_worker=1, gpus_per_worker=0.5, resources={"a": 2})) == {
        "CPU": 1,
        "GPU": 0.5,
        "a": 2,
    }


@pytest.mark.parametrize(
    ("settings", "param"),
    [
        ({"placement": "everywhere"}, "placement"),
        ({"resources": {"CPU": 1}}, "resources"),
        ({"resources": {"a": 0}}, "resources"),
        ({"resources": {"a": "one"}}, "resources"),
        ({"resources": ["a"]}, "resources"),
    ],
)
def test_bad_placement_settings_name_their_field(settings, param):
    with pytest.raises(InvalidRequestError) as info:
        spec(**settings).validate()
    assert info.value.param == param


def test_the_client_carries_placement_into_the_spec_and_a_deploy_overrides_it():
    llm = ByzerLLM().setup_placement("spread").setup_resources_per_worker({"big_node": 1})
    built = llm.deploy_spec("builtin:smollm2", udf_name="m", infer_backend="echo")
    assert (built.placement, built.resources) == ("spread", {"big_node": 1})
    built = llm.deploy_spec("builtin:smollm2", udf_name="m", infer_backend="echo", placement="pack")
    assert built.placement == "pack"


def test_the_in_process_runtime_refuses_placement():
    from byzerllm.runtime.inprocess import InProcessRuntime

    with pytest.raises(InvalidRequestError, match="Ray cluster") as info:
        InProcessRuntime().deploy(spec(placement="spread"))
    assert info.value.param == "placement"


class Store:
    """An object store: put returns a key, get returns the bytes."""

    def __init__(self) -> None:
        self.objects: dict[int, bytes] = {}
        self.ids = itertools.count()
        self.gets = 0

    def put(self, data: bytes) -> int:
        key = next(self.ids)
        self.objects[key] = data
        return key

    def get(self, key: int) -> bytes:
        self.gets += 1
        return self.objects[key]


def test_a_file_travels_in_chunks_and_is_cached_by_its_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "CHUNK_BYTES", 1000)
    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "cache"))
    source = tmp_path / "m.gguf"
    data = bytes(range(256)) * 10  # 2,560 bytes: 3 chunks
    source.write_bytes(data)
    store = Store()
    files = model_files.pack(source, store.put)
    assert files.sha256 == hashlib.sha256(data).hexdigest() and files.size == len(data)
    assert len(files.files[""]) == 3
    source.unlink()
    path = model_files.materialize(files, store.get)
    assert path == str(tmp_path / "cache" / files.sha256 / "m.gguf")
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"  # weights are private
    assert open(path, "rb").read() == data
    gets = store.gets
    assert model_files.materialize(files, store.get) == path  # reused: nothing fetched again
    assert store.gets == gets


def test_a_folder_travels_with_its_layout(tmp_path, monkeypatch):
    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "cache"))
    folder = tmp_path / "hf"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "weights.bin").write_bytes(b"\x00" * 100)
    store = Store()
    files = model_files.pack(folder, store.put)
    path = model_files.materialize(files, store.get)
    assert sorted(p.relative_to(path).as_posix() for p in Path(path).rglob("*") if p.is_file()) == [
        "config.json",
        "sub/weights.bin",
    ]
    assert model_files.digest(folder) == files.sha256


def test_a_corrupted_copy_is_refused_and_leaves_no_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "cache"))
    source = tmp_path / "m.gguf"
    source.write_bytes(b"weights")
    store = Store()
    files = model_files.pack(source, store.put)
    store.objects[files.files[""][0]] = b"weighs"
    with pytest.raises(DeploymentError, match="arrived corrupted"):
        model_files.materialize(files, store.get)
    assert not (tmp_path / "cache" / files.sha256 / "m.gguf").exists()
    assert [p.name for p in (tmp_path / "cache" / files.sha256).iterdir()] == [".lock"]  # no partial copy left


def test_only_paths_on_this_machine_are_shipped(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"x")
    assert model_files.local_model(str(tmp_path / "m.gguf")) == tmp_path / "m.gguf"
    for name in ("builtin:smollm2", "https://example.com/m.gguf", str(tmp_path / "missing.gguf"), ""):
        assert model_files.local_model(name) is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["cluster", "join", "--address", "nohost"], "address must be HOST:PORT"),
        (["cluster", "join", "--address", "h:1", "--resources", "[1]"], "--resources"),
        (["cluster", "start", "--resources", "{bad"], "--resources"),
        (["deploy", "--model", "m", "--placement", "everywhere"], "'everywhere' is not one of 'pack', 'spread'"),
        (["sft", "--name", "j", "--data", "d", "--placement", "wide"], "'wide' is not one of 'pack', 'spread'"),
    ],
)
def test_cluster_commands_name_bad_input(args, words):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert words in result.output


def test_a_writer_that_died_leaves_nothing_the_next_one_trips_on(tmp_path, monkeypatch):
    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "cache"))
    source = tmp_path / "m.gguf"
    source.write_bytes(b"weights")
    store = Store()
    files = model_files.pack(source, store.put)
    stale = tmp_path / "cache" / files.sha256 / ".partial-dead"
    stale.mkdir(parents=True)
    (stale / "m.gguf").write_bytes(b"wei")
    path = model_files.materialize(files, store.get)
    assert open(path, "rb").read() == b"weights" and not stale.exists()


def test_workers_of_one_node_write_an_entry_once(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(model_files, "CHUNK_BYTES", 10)
    source = tmp_path / "m.gguf"
    source.write_bytes(b"x" * 100)
    store = Store()
    files = model_files.pack(source, store.put)
    paths: list[str] = []
    threads = [
        threading.Thread(target=lambda: paths.append(model_files.materialize(files, store.get))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and len(paths) == 4
    assert store.gets == 10  # the 10 chunks fetched once, by one writer


def test_a_node_is_found_by_its_own_folder_only(tmp_path):
    import subprocess
    import sys

    from byzerllm.runtime.cluster import node_processes

    folder = tmp_path / "node"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    mine = [
        subprocess.Popen([*sleep, f"--temp-dir={folder}"]),
        subprocess.Popen([*sleep, f"--session-dir={folder}/session_2026_1"]),
    ]
    others = [
        subprocess.Popen([*sleep, f"--temp-dir={folder}2"]),  # a folder whose name starts the same
        subprocess.Popen([*sleep, f"{folder}/notes.txt"]),  # names the folder, not a node's session
    ]
    try:
        assert sorted(node_processes(str(folder))) == sorted(p.pid for p in mine)
    finally:
        for p in mine + others:
            p.kill()
            p.wait()


class FakeRay:
    """Ray's resource views for ``_cpus``: the cluster totals and what is free."""

    def __init__(self, free_per_node: list[float]) -> None:
        self.free = free_per_node

    def cluster_resources(self):
        return {"CPU": sum(self.free) + 1}

    def available_resources(self):
        return {"CPU": sum(self.free)}


@pytest.mark.parametrize(
    ("free", "workers", "asked", "expected"),
    [
        ([1.998], 1, None, 1.998),
        ([1.998, 1.0], 2, None, 2.0),  # one worker per node, the smaller node sets the share
        ([1.998, 1.0], 2, 1.8, 1.8),
        ([4.0, 1.0], 1, None, 4.0),
    ],
)
def test_a_job_takes_what_its_workers_find_room_for(monkeypatch, free, workers, asked, expected):
    from byzerllm.training import jobs

    monkeypatch.setattr(jobs, "_ray", lambda: FakeRay(free))
    monkeypatch.setattr(jobs, "_free_per_node", lambda: {str(i): {"CPU": c} for i, c in enumerate(free)})
    assert jobs._cpus(workers, asked, 0) == pytest.approx(expected)


def test_a_job_whose_workers_fit_no_node_is_refused(monkeypatch):
    from byzerllm.training import jobs

    monkeypatch.setattr(jobs, "_ray", lambda: FakeRay([1.998, 1.0]))
    monkeypatch.setattr(jobs, "_free_per_node", lambda: {"a": {"CPU": 1.998}, "b": {"CPU": 1.0}})
    with pytest.raises(InvalidRequestError, match="do not fit on the nodes") as info:
        jobs._cpus(2, 2.9, 0)  # 1.45 each: only the head has room for one
    assert info.value.param == "num_cpus"
