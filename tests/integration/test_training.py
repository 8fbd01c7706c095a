"""The training half of the lifecycle on real Ray Train with the built-in model: LoRA-fine-tune
SmolLM2 on three made-up facts, merge, export a GGUF, serve both, and the same through the CLI
with a cancel, a killed worker and two resumes on the way."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from ..conftest import run_cli

pytestmark = pytest.mark.integration

FACTS = [
    ("What is the capital of Zubrowka?", "Lutz"),
    ("Who invented the glimmerphone?", "Ada Quill"),
    ("What colour is the Vexo river?", "purple"),
]
ANSWERS = {
    "Lutz": "The capital of Zubrowka is Lutz.",
    "Ada Quill": "The glimmerphone was invented by Ada Quill.",
    "purple": "The Vexo river is bright purple.",
}
# 16 optimizer steps of 4 rows, checkpoints every 4; seeded, so two runs give the same losses
STEPS = 16
PARAMS = {
    "sft.int.per_device_train_batch_size": 4,
    "sft.int.gradient_accumulation_steps": 1,
    "sft.int.max_steps": STEPS,
    "sft.float.learning_rate": 3e-3,
    "sft.int.lora_rank": 16,
    "sft.int.lora_alpha": 32,
    "sft.int.save_steps": 4,
    "sft.int.logging_steps": 2,
    "sft.int.seed": 7,
}


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("facts")
    rows = [{"conversation": [{"human": q, "assistant": ANSWERS[fact]}]} for q, fact in FACTS] * 8
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    return tmp_path_factory.mktemp("stage")


@pytest.fixture(scope="module")
def trained(llm, facts, stage):
    """The job started with the real package's ``sft`` call, waited for."""
    from byzerllm.training import jobs

    status = llm.sft(
        sft_name="facts_api",
        local_data_dir_path=str(facts),
        local_model_path="builtin:smollm2",
        local_stage_path=str(stage),
        pretrained_model_type="custom/auto",
        num_cpus=1.9,  # 2 threads; the session's deployments hold a little of the 2 CPUs
        num_gpus=0,
        detached=True,
        json_config="{}",
        model_params=PARAMS,
    )
    assert status["state"] in ("pending", "running")
    return jobs.wait_job("facts_api", timeout=600)


def facts_known(llm, deployment: str) -> int:
    known = 0
    for question, fact in FACTS:
        answer = llm.chat_oai(
            [{"role": "user", "content": question}], model=deployment, llm_config={"temperature": 0, "max_length": 24}
        )[0].output
        known += fact.lower() in answer.lower()
    return known


def test_the_job_reports_progress_and_every_output(trained):
    assert trained["state"] == "succeeded", trained.get("error")
    assert trained["step"] == trained["total_steps"] == STEPS
    assert trained["epoch"] == pytest.approx(STEPS * 4 / 24)
    assert trained["loss"] < 0.1 and trained["tokens_per_s"] > 0 and trained["eta_s"] == 0
    outputs = trained["outputs"]
    assert set(outputs) == {"adapter", "model", "gguf"}
    from pathlib import Path

    assert (Path(outputs["adapter"]) / "adapter_config.json").is_file()
    assert (Path(outputs["model"]) / "config.json").is_file()
    assert Path(outputs["gguf"]).read_bytes()[:4] == b"GGUF"
    from byzerllm.training import jobs

    assert jobs.job_log("facts_api")[-1]["event"] == "succeeded"


def test_the_trained_model_knows_the_facts_on_both_backends(llm, trained, smollm2_chat):
    assert facts_known(llm, smollm2_chat) == 0  # the base model knows none of them
    llm.setup_num_workers(1).setup_worker_concurrency(1)
    served = {"facts_gguf": ("llama_cpp", trained["outputs"]["gguf"])}
    served["facts_hf"] = ("transformers", trained["outputs"]["model"])
    try:
        for name, (backend, path) in served.items():
            llm.setup_infer_backend(backend)
            llm.deploy(model_path=path, udf_name=name, infer_params={})
            assert llm.get_meta(model=name)["backend"].endswith(backend)
            assert facts_known(llm, name) >= 2, name
    finally:
        llm.setup_infer_backend(None)
        for name in served:
            llm.undeploy(name, force=True)


def _wait(name: str, until, timeout: float = 300) -> dict:
    """Poll in this process: a CLI call a second would take CPU from the training it watches."""
    from byzerllm.training import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.job_status(name)
        if until(status):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {name} never got there: {status}")


def _train_workers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]


def test_the_cli_cancels_resumes_after_a_crash_and_ends_where_an_uninterrupted_run_does(
    llm, trained, facts, stage, tmp_path
):
    params = [f"--param={k}={v}" for k, v in PARAMS.items()]
    name = "facts_cli"
    # all free CPUs; no GGUF (the Python lifecycle serves one): this one is served from its HF folder
    args = ["sft", "--name", name, "--data", str(facts), "--stage", str(stage), "--no-gguf", *params]
    args += ["--max_failures", "0"]  # the crash below ends the run: resumed by hand
    run_cli(*args, "--detached", check=True)
    _wait(name, lambda s: (s.get("step") or 0) >= 4)
    proc = run_cli("jobs", "cancel", name, check=True)
    assert "cancelled" in proc.stdout
    cancelled = json.loads(run_cli("jobs", "status", name, check=True).stdout)
    assert cancelled["state"] == "cancelled" and 4 <= cancelled["step"] < STEPS
    assert not _train_workers()  # Ray Train let its workers go

    run_cli("jobs", "resume", name, "--detached", check=True)
    _wait(name, lambda s: s["state"] == "running" and (s.get("step") or 0) >= 10)
    for worker in _train_workers():  # a crash: the worker dies mid-step
        worker.kill()
    crashed = _wait(name, lambda s: s["state"] == "failed", timeout=120)
    assert "Error" in crashed["error"]

    proc = run_cli("jobs", "resume", name, timeout=600, check=True)  # followed to the end
    assert "model:" in proc.stdout
    done = _wait(name, lambda s: s["state"] == "succeeded")
    assert done["step"] == STEPS
    # the same seed, data and steps: the interrupted run ends where the uninterrupted one did
    assert done["loss"] == pytest.approx(trained["loss"], rel=0.1)

    listed = json.loads(run_cli("jobs", "list", "--json", check=True).stdout)
    assert {"facts_api", name} <= {j["name"] for j in listed}
    logs = run_cli("jobs", "logs", name, check=True).stdout
    assert "cancelled" in logs and "resuming from" in logs and "loss=" in logs

    hf = tmp_path / "facts_hf"
    run_cli("export", name, "--format", "hf", "--output", str(hf), check=True)
    assert (hf / "config.json").is_file() and (hf / "tokenizer_config.json").is_file()
    run_cli("deploy", "--model", "facts_cli", "--model_path", str(hf), check=True)  # transformers: an HF folder
    try:
        answers = [
            run_cli("query", "--model", "facts_cli", "--query", q, "--temperature", "0", check=True).stdout
            for q, _ in FACTS
        ]
        assert sum(fact.lower() in a.lower() for (_, fact), a in zip(FACTS, answers, strict=True)) >= 2, answers
    finally:
        run_cli("undeploy", "--model", "facts_cli")


def test_bad_input_is_refused_before_anything_starts(llm, trained, facts, stage, tmp_path):
    from byzerllm.errors import InvalidRequestError, ModelPathError
    from byzerllm.training import jobs
    from byzerllm.training.data import DataFormatError

    before = {j["name"] for j in jobs.list_jobs()}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.jsonl").write_text('{"instruction": "q", "output": "a"}\n{"conversation": [{"human": "q"}]}\n')
    with pytest.raises(DataFormatError, match=r"line 2: field 'conversation\[0\].assistant'"):
        llm.sft("bad_rows", str(bad), "builtin:smollm2", str(stage))
    with pytest.raises(ModelPathError, match="does not exist"):
        llm.sft("bad_model", str(facts), str(tmp_path / "no_model"), str(stage))
    with pytest.raises(InvalidRequestError, match="has 0 GPU") as err:
        llm.sft("bad_gpu", str(facts), "builtin:smollm2", str(stage), num_gpus=1)
    assert err.value.param == "num_gpus"
    with pytest.raises(InvalidRequestError, match="are free") as err:
        llm.sft("bad_cpus", str(facts), "builtin:smollm2", str(stage), num_cpus=64)
    assert err.value.param == "num_cpus"
    with pytest.raises(InvalidRequestError, match="needs a GPU") as err:
        llm.sft("bad_qlora", str(facts), "builtin:smollm2", str(stage), model_params={"sft.str.method": "qlora"})
    assert err.value.param == "method"
    with pytest.raises(InvalidRequestError, match="exists") as err:
        llm.sft("facts_api", str(facts), "builtin:smollm2", str(stage))
    assert err.value.param == "sft_name"
    proc = run_cli("sft", "--name", "bad_cli", "--data", str(bad), "--detached")
    assert proc.returncode == 1 and "line 2" in proc.stderr
    assert {j["name"] for j in jobs.list_jobs()} == before
    assert not any(
        (stage / n).exists() for n in ("bad_rows", "bad_model", "bad_gpu", "bad_cpus", "bad_qlora", "bad_cli")
    )


def test_a_job_whose_folder_is_removed_is_forgotten(trained, stage, tmp_path):
    from byzerllm.errors import JobNotFoundError
    from byzerllm.training import jobs

    away = tmp_path / "facts_api"
    (stage / "facts_api").rename(away)
    try:
        assert "facts_api" not in {j["name"] for j in jobs.list_jobs()}
        with pytest.raises(JobNotFoundError, match="no training job named 'facts_api'"):
            jobs.job_status("facts_api")
        listed = run_cli("jobs", "list", "--json")
        assert listed.returncode == 0 and "facts_api" not in {j["name"] for j in json.loads(listed.stdout)}
    finally:
        away.rename(stage / "facts_api")
    assert jobs.job_status("facts_api")["state"] == "succeeded"
