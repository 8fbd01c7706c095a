"""The console's Jobs and Documents endpoints through ``create_app``, in this process (no Ray).

Jobs: folders written as a real job writes them (``status.json`` and ``train.log`` by the job's own
functions, ``progress.json`` and the loss records by the Trainer callback ``Progress`` fed a real
``TrainerState``), with only the cluster's job registry, the actor check and the actor start
replaced. Documents: a real SQLite store in a temporary folder, real embeddings of the built-in
all-MiniLM-L6-v2 and an ``echo`` chat deployment in a ``SimpleByzerLLM``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import byzerllm
from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption
from byzerllm.errors import ModelNotFoundError
from byzerllm.server import app as server_app
from byzerllm.server import create_app
from byzerllm.server.routes import ROUTERS, documents, jobs
from byzerllm.training import jobs as training
from byzerllm.training.loop import CANCEL, Progress, write_json

EMB, CHAT = "console_emb", "console_chat"


@pytest.fixture(scope="module")
def llm():
    client = byzerllm.SimpleByzerLLM()
    client.deploy(
        model_path="builtin:all-minilm-l6-v2",
        pretrained_model_type="custom/emb",
        udf_name=EMB,
        infer_params={"n_threads": 1},
    )
    client.setup_infer_backend("echo")
    client.deploy(model_path="", udf_name=CHAT, infer_params={})
    yield client
    client.close()


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def http(llm, store, monkeypatch):
    added = tuple(r for r in (jobs.router, documents.router) if r not in ROUTERS)
    monkeypatch.setattr(server_app, "ROUTERS", (*ROUTERS, *added))
    app = create_app(llm)
    app.state.server.storage_dir = str(store)
    app.state.server.documents_root = str(store.parent)  # the test's folders, not the working directory
    with TestClient(app) as client:
        yield client


def error_of(response) -> dict[str, Any]:
    assert response.status_code >= 400, response.text
    return response.json()["error"]


# --- jobs --------------------------------------------------------------------------------------
def make_job(stage: Path, name: str, state: str, losses: list[dict[str, float]], events: int = 2) -> Path:
    """A job folder as ``start_job``, the job actor and rank 0's ``Progress`` callback leave it."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    folder = stage / name
    folder.mkdir(parents=True)
    spec = training.JobSpec(
        name=name, kind="sft", model_path="builtin:smollm2", data_path="/d", dir=str(folder), config={}
    )
    write_json(folder / "job.json", spec.model_dump())
    training._write_status(folder, state="pending", created_at=time.time())
    training._write_status(folder, state="running", error=None, started_at=time.time())
    for i in range(events):
        training.log_line(folder, f"event {i}")
    progress = Progress(folder, on_ray=False)
    args = TrainingArguments(output_dir=str(folder / "out"), report_to=[])
    state_ = TrainerState(max_steps=20, global_step=0, epoch=0.0)
    progress.on_train_begin(args, state_, TrainerControl())
    for logs in losses:
        state_.global_step, state_.epoch = int(logs.pop("step")), 0.5
        progress.on_log(args, state_, TrainerControl(), logs=logs)
    if state != "running":
        training._write_status(folder, state=state, finished_at=time.time())
        training.log_line(folder, state)
    return folder


@pytest.fixture
def registry(tmp_path, monkeypatch) -> dict[str, Any]:
    """Two jobs in the registry (``done`` succeeded, ``live`` running) and the actors started."""
    folders = {
        "live": make_job(tmp_path / "stage", "live", "running", [{"step": 10, "loss": 2.5}], events=60),
        "done": make_job(
            tmp_path / "stage",
            "done",
            "succeeded",
            [
                {"step": 10, "loss": 2.0, "learning_rate": 2e-4},
                {"step": 10, "eval_loss": 2.25},
                {"step": 20, "loss": 1.5},
            ],
        ),
    }
    started: list[training.JobSpec] = []
    monkeypatch.setattr(training, "_registered", lambda: {n: str(f) for n, f in folders.items()})
    monkeypatch.setattr(training, "_alive", lambda name: name == "live" or bool(started))
    monkeypatch.setattr(training, "_start", started.append)
    return {"folders": folders, "started": started}


def test_the_job_list_has_each_jobs_status(http, registry):
    listed = http.get("/v1/jobs").json()["data"]
    assert [j["name"] for j in listed] == ["done", "live"]
    done = listed[0]
    assert (done["state"], done["kind"], done["step"], done["total_steps"], done["loss"]) == (
        "succeeded",
        "sft",
        20,
        20,
        1.5,
    )
    assert done["eval_loss"] == 2.25 and done["dir"] == str(registry["folders"]["done"])


def test_a_jobs_detail_has_its_loss_curve_and_the_tail_of_its_log(http, registry):
    done = http.get("/v1/jobs/done").json()
    assert done["state"] == "succeeded"
    assert done["loss_curve"] == [
        {"step": 10, "loss": 2.0, "eval_loss": 2.25},
        {"step": 20, "loss": 1.5, "eval_loss": None},
    ]
    assert done["log_tail"][0].endswith(" event 0") and done["log_tail"][-1].endswith(" succeeded")
    assert any("step=10 loss=2.0 learning_rate=0.0002" in line for line in done["log_tail"])

    live = http.get("/v1/jobs/live").json()
    assert live["state"] == "running" and len(live["log_tail"]) == jobs.LOG_TAIL  # of 61 records
    assert live["log_tail"][-1].split(" ", 1)[1].startswith("step=10 loss=2.5")

    assert len(http.get("/v1/jobs/live/log").json()["lines"]) == 61  # fewer than the default 200
    assert http.get("/v1/jobs/live/log", params={"tail": 2}).json()["lines"][0].endswith(" event 59")
    bad = error_of(http.get("/v1/jobs/live/log", params={"tail": -1}))
    assert bad["param"] == "query.tail"  # the app names a query parameter so (body_param)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/jobs/nope"),
        ("get", "/v1/jobs/nope/log"),
        ("post", "/v1/jobs/nope/cancel"),
        ("post", "/v1/jobs/nope/resume"),
    ],
)
def test_an_unknown_job_is_a_404_listing_the_jobs(http, registry, method, path):
    response = getattr(http, method)(path)
    assert response.status_code == 404
    err = error_of(response)
    assert err["type"] == "not_found_error" and err["param"] == "name"
    assert err["message"] == "no training job named 'nope'; jobs: done, live"


def test_cancel_then_resume_a_job(http, registry):
    folder = registry["folders"]["live"]

    def job_actor() -> None:  # what the job does when it sees the cancel file after its step
        while not (folder / CANCEL).exists():
            time.sleep(0.05)
        training._write_status(folder, state="cancelled", finished_at=time.time())

    actor = threading.Thread(target=job_actor)
    actor.start()
    asked = http.post("/v1/jobs/live/cancel")  # answers at once: the job stops after its step
    assert asked.status_code == 200 and asked.json()["state"] == "running"
    actor.join(5)
    assert http.get("/v1/jobs/live").json()["state"] == "cancelled"
    assert json.loads((folder / "status.json").read_text())["state"] == "cancelled"

    again = error_of(http.post("/v1/jobs/live/cancel"))
    assert again["param"] == "name" and "is cancelled, not running" in again["message"]

    checkpoint = folder / "ray" / "train" / "checkpoint_000000" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    resumed = http.post("/v1/jobs/live/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "pending"
    [spec] = registry["started"]
    assert spec.name == "live" and spec.resume_from == str(checkpoint) and not (folder / CANCEL).exists()


def test_a_succeeded_job_does_not_resume(http, registry):
    err = error_of(http.post("/v1/jobs/done/resume"))
    assert err["param"] == "name" and "only failed or cancelled jobs resume" in err["message"]
    assert registry["started"] == []


# --- storage -----------------------------------------------------------------------------------
NOTES = [
    ("n1", "The Vexo river runs purple through the valley of Lutz."),
    ("n2", "Deployments are pools of workers on a Ray cluster."),
    ("n3", "The palette has red, green and blue colours."),
]


@pytest.fixture
def tables(llm, store) -> None:
    notes = ByzerStorage(None, "kb", "notes", base_dir=str(store))
    notes.schema_builder().add_field("_id", DataType.STRING).add_field(
        "content", DataType.STRING, [FieldOption.ANALYZE]
    ).add_field("year", DataType.LONG).add_array_field("vector", DataType.FLOAT).execute()
    vectors = [r.output for r in llm.emb(EMB, [text for _, text in NOTES])]
    rows = [
        {"_id": i, "content": t, "year": 2020 + n, "vector": v}
        for n, ((i, t), v) in enumerate(zip(NOTES, vectors, strict=True))
    ]
    notes.write_builder().add_items(rows, vector_fields=["vector"], search_fields=["content"]).execute()
    plain = ByzerStorage(None, "kb", "plain", base_dir=str(store))
    plain.schema_builder().add_field("content", DataType.STRING, [FieldOption.ANALYZE]).execute()
    plain.write_builder().add_items([{"_id": "p1", "content": "plain text only"}], search_fields=["content"]).execute()
    notes.close()
    plain.close()


def test_listing_an_empty_store_creates_nothing(http, store):
    assert http.get("/v1/storage/tables").json() == {"data": []}
    assert http.get("/v1/rag/indexes").json() == {"data": []}
    assert not store.exists()


def test_the_store_lists_its_tables_with_their_fields(http, tables):
    listed = {t["table"]: t for t in http.get("/v1/storage/tables").json()["data"]}
    assert listed["notes"] == {
        "database": "kb",
        "table": "notes",
        "rows": 3,
        "fields": [
            {"name": "_id", "type": "string"},
            {"name": "content", "type": "string"},
            {"name": "year", "type": "long"},
            {"name": "vector", "type": "array(float)"},
        ],
        "vector_fields": [{"name": "vector", "dim": 384}],
        "text_fields": ["content"],
    }
    assert listed["plain"]["vector_fields"] == [] and listed["plain"]["rows"] == 1


@pytest.mark.parametrize("mode", ["vector", "fulltext", "hybrid"])
def test_a_search_in_each_mode_returns_rows_with_their_score(http, tables, mode):
    body = {"database": "kb", "table": "notes", "query": "purple river", "mode": mode, "limit": 2, "emb_model": EMB}
    rows = http.post("/v1/storage/search", json=body).json()["data"]
    assert 1 <= len(rows) <= 2 and rows[0]["_id"] == "n1" and rows[0]["year"] == 2020
    assert all(isinstance(r["_score"], float) and "vector" not in r for r in rows)
    assert [r["_score"] for r in rows] == sorted((r["_score"] for r in rows), reverse=True)


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"mode": "fuzzy"}, "mode", "'vector', 'fulltext' or 'hybrid'"),
        ({"table": "nope"}, "table", "table 'nope' does not exist in database 'kb'; tables: notes, plain"),
        ({"database": "nope"}, "database", "database 'nope' does not exist; databases: kb"),
        ({"query": None}, "query", "string"),
        ({"query": "  "}, "query", "non-empty"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        (
            {"table": "plain", "mode": "vector"},
            "mode",
            "needs a vector field, which table 'plain' has not; accepted: fulltext",
        ),
        ({"table": "plain"}, "mode", "accepted: fulltext"),
        ({"emb_model": None}, "emb_model", "name the embedding deployment that made the vectors of notes.vector"),
        ({"emb_model": "nope"}, "emb_model", "nope"),
        ({"emb_model": CHAT}, "emb_model", "holds 384-dimensional ones"),  # echo "embeds" into 3 dimensions
        ({"vector_field": "content"}, "vector_field", "accepted: vector"),
    ],
)
def test_a_bad_search_is_a_400_naming_the_field(http, tables, change, param, words):
    body = {"database": "kb", "table": "notes", "query": "river", "mode": "hybrid", "emb_model": EMB, **change}
    err = error_of(http.post("/v1/storage/search", json=body))
    assert err["param"] == param and words in err["message"]


# --- document Q&A ------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "river.md").write_text("# Rivers\n\nThe Vexo river runs purple through the valley of Lutz.\n")
    (docs / "cluster.md").write_text("# Cluster\n\n## Workers\n\nDeployments are pools of workers on Ray.\n")
    (docs / "colours.md").write_text("# Colours\n\nThe palette has red, green and blue.\n")
    return docs


def wait_built(http, name: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        [item] = [i for i in http.get("/v1/rag/indexes").json()["data"] if i["name"] == name]
        if item["state"] != "building":
            return item
        time.sleep(0.1)
    raise AssertionError(f"index {name} still building after {seconds}s")


def test_an_index_builds_in_the_background_and_answers_with_its_sources(http, folder):
    started = http.post("/v1/rag/indexes", json={"name": "kb", "source_dir": str(folder), "emb_model": EMB})
    assert started.status_code == 202
    item = started.json()
    assert (item["name"], item["state"], item["emb_model"], item["error"]) == ("kb", "building", EMB, None)
    assert item["progress"]["files_total"] == 3 and item["source_dir"] == str(folder.resolve())

    built = wait_built(http, "kb")
    assert built["state"] == "ready" and built["error"] is None, built
    assert (built["files"], built["emb_model"], built["source_dir"]) == (3, EMB, str(folder.resolve()))
    progress = built["progress"]
    assert progress["files_done"] == progress["files_total"] == 3 and progress["indexed"] == 3
    assert progress["chunks"] == built["chunks"] >= 3 and progress["errors"] == []

    answer = http.post(
        "/v1/rag/ask", json={"index": "kb", "question": "What colour is the Vexo river?", "model": CHAT, "top_k": 2}
    )
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert "Vexo" in out["answer"]  # echo answers with the prompt's words: the sources and the question
    assert [s["n"] for s in out["sources"]] == [1, 2] and out["sources"][0]["source"] == "river.md"
    first = out["sources"][0]
    assert "purple" in first["text"] and isinstance(first["score"], float) and first["citation"] == "river.md § Rivers"

    # the index's chunks are a table of the store, searched with the embedding model the index recorded
    tables = {(t["database"], t["table"]) for t in http.get("/v1/storage/tables").json()["data"]}
    assert {("rag", "kb_chunks"), ("rag", "kb_files"), ("rag", "kb_index")} <= tables
    rows = http.post(
        "/v1/storage/search", json={"database": "rag", "table": "kb_chunks", "query": "purple river", "mode": "vector"}
    )
    assert rows.json()["data"][0]["source"] == "river.md"

    # a second build finds nothing changed
    assert http.post("/v1/rag/indexes", json={"name": "kb", "source_dir": str(folder)}).status_code == 202
    again = wait_built(http, "kb")
    assert again["state"] == "ready" and again["progress"]["unchanged"] == 3 and again["chunks"] == built["chunks"]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"source_dir": "/etc"}, "source_dir", "must be a folder under"),
        (
            {"emb_model": "nope"},
            "emb_model",
            "no embedding deployment named 'nope'; deployed: console_chat, console_emb",
        ),
        ({"name": "bad-name"}, "name", "pattern"),
    ],
)
def test_a_bad_build_is_a_400_naming_the_field(http, folder, body, param, words):
    err = error_of(
        http.post("/v1/rag/indexes", json={"name": "kb", "source_dir": str(folder), "emb_model": EMB, **body})
    )
    assert err["param"] == param and words in err["message"]
    assert http.get("/v1/rag/indexes").json() == {"data": []}


def test_a_build_that_fails_is_listed_with_its_error(http, folder, llm, monkeypatch):
    def removed(model, texts, **kwargs):  # the embedding deployment went away after the build started
        raise ModelNotFoundError(f"no deployment named {model!r}", available=[CHAT])

    monkeypatch.setattr(llm, "emb", removed)
    assert (
        http.post("/v1/rag/indexes", json={"name": "kb", "source_dir": str(folder), "emb_model": EMB}).status_code
        == 202
    )
    item = wait_built(http, "kb")
    assert (item["state"], item["error"], item["chunks"]) == ("failed", f"no deployment named {EMB!r}", 0)
    assert item["progress"]["files_done"] == 0 and item["progress"]["files_total"] == 3


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"index": "nope"}, "index", "index 'nope' does not exist; indexes: none"),
        ({"question": " "}, "question", "non-empty"),
        ({"mode": "fuzzy"}, "mode", "'hybrid', 'vector' or 'fulltext'"),
        ({"top_k": 0}, "top_k", "greater than or equal to 1"),
    ],
)
def test_a_bad_question_is_a_400_naming_the_field(http, body, param, words):
    err = error_of(http.post("/v1/rag/ask", json={"index": "kb", "question": "why?", "model": CHAT, **body}))
    assert err["param"] == param and words in err["message"]
