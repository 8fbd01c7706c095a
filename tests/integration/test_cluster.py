"""Two Ray nodes on one machine: the session's head and a second node that joins it with its own
Ray folder, model cache and a custom resource. A spread deployment puts a worker on each, a model
file that only the deploying process had is served from the second node's cache, a training job
spans both nodes, and the second node's loss moves its worker to the head within 30 s."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from byzerllm.errors import ByzerLLMError
from byzerllm.runtime.cluster import node_processes

from ..conftest import run_cli

pytestmark = pytest.mark.integration

RESOURCE = "second_node"
MESSAGES = [{"role": "user", "content": "Say hello."}]
STEPS = 12  # left running for the node-loss test: ~2.5 s a step


def _answered(reply) -> bool:
    """A whole answer came back (its text may be anything, even empty, from this small model)."""
    meta = reply[0].metadata
    return meta["finish_reason"] in ("stop", "length") and meta["generated_tokens_count"] >= 1


def _kill_node(temp_dir: str) -> None:
    """A machine lost: every process of the node dies at once (no goodbye to the head)."""
    for pid in node_processes(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def second_node(ray_cluster):
    """A worker node joined with ``byzerllm cluster join``; killed at the end if still alive."""
    ray = ray_cluster
    # short paths: Ray's socket paths under the node folder must stay below the unix limit
    temp_dir = tempfile.mkdtemp(prefix="bz-node2-")
    cache = tempfile.mkdtemp(prefix="bz-cache2-")
    address = ray.get_runtime_context().gcs_address
    proc = run_cli(
        "cluster", "join", "--address", address, "--num_cpus", "1",
        "--resources", json.dumps({RESOURCE: 1}), "--temp_dir", temp_dir, "--model_cache", cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 30
    node = None
    while node is None and time.monotonic() < deadline:
        node = next((n for n in ray.nodes() if n["Alive"] and RESOURCE in n["Resources"]), None)
        time.sleep(0.2)
    assert node is not None, "the second node did not join"
    head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
    try:
        yield {
            "node_id": node["NodeID"],
            "head_id": head,
            "temp_dir": temp_dir,
            "cache": Path(cache),
            "address": address,
        }
    finally:
        _kill_node(temp_dir)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def spread(llm, second_node, tmp_path_factory):
    """The built-in GGUF copied to a folder only this process knows, deployed with 2 workers spread
    over the nodes, then the folder removed."""
    from byzerllm.backends.models import resolve_model_path

    folder = tmp_path_factory.mktemp("only-here")
    gguf = folder / "smollm2-copy.gguf"
    shutil.copyfile(resolve_model_path("builtin:smollm2"), gguf)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    name = "spread_chat"
    llm.deploy(
        model_path=str(gguf), udf_name=name, infer_params={}, num_workers=2, placement="spread",
        infer_backend="llama_cpp",
    )  # fmt: skip
    shutil.rmtree(folder)
    yield {"name": name, "sha256": sha, "file": gguf.name}
    if llm.is_model_exist(name):
        llm.undeploy(name)


def test_status_lists_both_nodes_and_their_resources(second_node):
    proc = run_cli("cluster", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["address"] == second_node["address"]
    nodes = {n["node_id"]: n for n in status["nodes"] if n["alive"]}
    assert set(nodes) == {second_node["node_id"], second_node["head_id"]}
    assert nodes[second_node["head_id"]]["head"] and not nodes[second_node["node_id"]]["head"]
    assert nodes[second_node["node_id"]]["resources"][RESOURCE] == 1
    assert nodes[second_node["node_id"]]["resources"]["CPU"] == 1


def test_spread_puts_one_worker_on_each_node_from_the_model_cache(llm, spread, second_node):
    workers = llm.deployment_info(spread["name"])["workers"]
    assert sorted(w["node_id"] for w in workers) == sorted([second_node["head_id"], second_node["node_id"]])
    # the second node wrote the file into its own cache, under its digest, whole
    cached = second_node["cache"] / spread["sha256"] / spread["file"]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == spread["sha256"]
    for _ in range(4):  # lru alternates: both workers answer, the source file long gone
        assert _answered(llm.chat_oai(MESSAGES, model=spread["name"], llm_config={"max_length": 4}))
    stat = llm.stat(spread["name"])
    assert min(stat["total_requests"]) >= 1
    assert sorted(stat["workers_node_id"]) == sorted(w["node_id"] for w in workers)
    proc = run_cli("cluster", "status", "--json")
    placed = {n["node_id"]: n["workers"] for n in json.loads(proc.stdout)["nodes"]}
    assert any(w.startswith(spread["name"] + "/") for w in placed[second_node["node_id"]])


def test_one_postgres_store_is_read_and_written_from_both_nodes(ray_cluster, second_node):
    """A task on the second node writes rows to the store server started here; this process
    (the head's node) reads them, and the second node finds by full text what the head wrote."""
    from byzerllm.apps.byzer_storage.postgres_server import PostgresServer
    from byzerllm.apps.byzer_storage.simple_api import ByzerStorage, DataType, FieldOption

    ray = ray_cluster
    folder = tempfile.mkdtemp(prefix="bz-store-")  # as root, the server's own user must reach it
    os.chmod(folder, 0o755)
    server = PostgresServer(folder, "shared")
    url = server.start(host="0.0.0.0")["url"]  # what other machines connect to
    try:
        store = ByzerStorage("shared", "team", "notes", url=url)
        store.schema_builder().add_field("_id", DataType.STRING).add_field(
            "content", DataType.STRING, [FieldOption.ANALYZE]
        ).execute()
        store.write_builder().add_items(
            [{"_id": "head", "content": "written on the head node"}], search_fields=["content"]
        ).execute()

        @ray.remote(num_cpus=0, resources={RESOURCE: 0.01})
        def on_second_node(url: str) -> tuple[str, list[str]]:
            remote = ByzerStorage("shared", "team", "notes", url=url)
            remote.write_builder().add_items(
                [{"_id": "second", "content": "from the second node"}], search_fields=["content"]
            ).execute()
            found = remote.query_builder().set_search_query("head", fields=["content"]).execute()
            return ray.get_runtime_context().get_node_id(), [h["_id"] for h in found]

        node, found = ray.get(on_second_node.remote(url), timeout=120)
        assert node == second_node["node_id"] and found == ["head"]
        hits = store.query_builder().set_search_query("second", fields=["content"]).execute()
        assert [h["_id"] for h in hits] == ["second"]
        store.close()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_pinned_by_a_resource_no_node_has_names_it(llm, second_node):
    with pytest.raises(ByzerLLMError, match="gpu_box") as info:
        llm.deploy(model_path="builtin:smollm2", udf_name="nowhere", resources_per_worker={"gpu_box": 1})
    assert info.value.param == "resources"
    assert not llm.is_model_exist("nowhere")


@pytest.fixture(scope="module")
def two_node_job(llm, second_node, tmp_path_factory):
    """A 2-worker LoRA job spread over both nodes, checkpointing every 2 steps, left running."""
    data = tmp_path_factory.mktemp("job-data")
    rows = [{"conversation": [{"human": "Who made the glimmerphone?", "assistant": "Ada Quill."}]}] * 8
    (data / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    llm.sft(
        sft_name="two_nodes", local_data_dir_path=str(data), local_model_path="builtin:smollm2",
        local_stage_path=str(tmp_path_factory.mktemp("stage")), pretrained_model_type="custom/auto",
        num_cpus=1.8, num_gpus=0, detached=True, json_config="{}", num_workers=2, placement="spread", gguf=False,
        model_params={"sft.int.max_steps": STEPS, "sft.int.per_device_train_batch_size": 2, "sft.int.save_steps": 2,
                      "sft.int.logging_steps": 1},
    )  # fmt: skip
    return "two_nodes"


def _ranks(job: str) -> list[dict]:
    from byzerllm.training import jobs

    return [r for r in jobs.job_log(job) if "rank" in r]


def test_training_job_spans_both_nodes(two_node_job, second_node):
    from byzerllm.training import jobs

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (jobs.job_status(two_node_job).get("step") or 0) < 3:
        assert jobs.job_status(two_node_job)["state"] in ("pending", "running"), jobs.job_status(two_node_job)
        time.sleep(0.5)
    first = {r["rank"]: r["node_id"] for r in _ranks(two_node_job)}
    assert set(first) == {0, 1}
    assert set(first.values()) == {second_node["head_id"], second_node["node_id"]}


def test_node_loss_moves_its_workers_to_the_head(llm, spread, second_node, two_node_job):
    """The deployment's worker is back within 30 s; the job's workers start again on the head from
    the last checkpoint and the job ends at its last step."""
    from byzerllm.training import jobs

    assert jobs.job_status(two_node_job)["state"] == "running"  # killed mid-run
    name = spread["name"]
    lost = next(w["index"] for w in llm.deployment_info(name)["workers"] if w["node_id"] == second_node["node_id"])
    _kill_node(second_node["temp_dir"])
    killed = time.monotonic()
    errors: list[BaseException] = []
    back = None
    while time.monotonic() - killed < 45:
        try:  # requests meanwhile succeed on the head's worker or end with a documented error
            llm.chat_oai(MESSAGES, model=name, llm_config={"max_length": 2})
        except ByzerLLMError as exc:
            errors.append(exc)
        workers = llm.deployment_info(name)["workers"]
        if workers[lost]["node_id"] == second_node["head_id"]:
            back = time.monotonic() - killed
            break
        time.sleep(0.5)
    assert back is not None and back <= 30, f"worker {lost} not back on the head after {back}"
    print(f"worker {lost} back on the head {back:.1f} s after its node was killed")
    assert all(type(e).__name__ in ("WorkerDiedError", "DeploymentStartingError") for e in errors), errors
    for _ in range(6):
        assert _answered(llm.chat_oai(MESSAGES, model=name, llm_config={"max_length": 2}))
    stat = llm.stat(name)
    assert stat["workers_node_id"] == [second_node["head_id"]] * 2
    assert stat["workers_restarts"][lost] == 1, json.dumps(stat["events"])
    event = next(e for e in stat["events"] if e["worker"] == lost)
    assert event["event"] == "restarted"
    assert event["previous"]["node_id"] == second_node["node_id"]
    assert event["now"]["node_id"] == second_node["head_id"]

    status = jobs.wait_job(two_node_job, timeout=300)
    assert status["state"] == "succeeded", status.get("error")
    assert status["step"] == STEPS
    again = _ranks(two_node_job)[2:]
    assert {r["rank"] for r in again} == {0, 1}
    assert {r["node_id"] for r in again} == {second_node["head_id"]}
    assert all(r["resume"] for r in again)  # from a checkpoint, not from the start
