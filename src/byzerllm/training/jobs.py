"""Training jobs on Ray: named, detached, found by name from any process, like deployments.

A job is a detached actor (``job:<name>`` in the ``byzerllm`` namespace) that runs a Ray Train
``TorchTrainer`` (``loop.train_worker`` on each worker) and then writes the merged model and its
GGUF. Everything a job knows lives in its folder, ``<local_stage_path>/<name>/``:

- ``job.json`` the spec; ``status.json`` state, error and outputs (the job actor writes it);
  ``progress.json`` step, losses, tokens/s, ETA (rank 0 writes it); ``job.log`` one line per event
- ``ray/`` Ray Train's run (its checkpoints: ``resume`` starts from the last one)
- ``adapter/`` (LoRA), ``model/`` (merged or fully trained Hugging Face folder), ``<name>.gguf``

A small registry actor maps job names to folders, so ``status("x")`` works from any process.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import InvalidRequestError, JobNotFoundError
from ..runtime.cluster import NAMESPACE, on_head
from ..runtime.spec import PLACEMENTS
from .config import training_config
from .data import load_rows
from .loop import CANCEL, LOG, PROGRESS, write_json
from .models import model_source

PREFIX = "job:"
REGISTRY = "byzerllm-jobs"
ACTIVE = ("pending", "running", "exporting")
States = Literal["pending", "running", "exporting", "succeeded", "failed", "cancelled"]


class JobSpec(BaseModel):
    """What a job runs: ``kind`` sft or pretrain, the base model, the data, the folder, the
    hyper-parameters (``TrainingConfig`` as a dict) and the Ray Train shape."""

    name: str
    kind: Literal["sft", "pretrain"]
    model_path: str
    data_path: str
    dir: str
    config: dict[str, Any]
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    placement: Literal["pack", "spread"] = "pack"
    max_failures: int = 2
    use_gpu: bool = False
    gguf: bool = True
    gguf_type: str = "f16"
    resume_from: str | None = None


def _ray():
    import ray

    from ..runtime.cluster import connect_cluster

    connect_cluster(start_local=False)
    return ray


def log_line(folder: Path, message: str) -> None:
    with (Path(folder) / LOG).open("a") as f:
        f.write(json.dumps({"time": time.time(), "event": message}) + "\n")


def _registry():
    ray = _ray()

    @ray.remote(num_cpus=0)
    class JobRegistry:
        def __init__(self) -> None:
            self.jobs: dict[str, str] = {}

        def put(self, name: str, folder: str) -> None:
            self.jobs[name] = folder

        def get(self, name: str) -> str | None:
            return self.jobs.get(name)

        def all(self) -> dict[str, str]:
            return dict(self.jobs)

    return JobRegistry.options(
        name=REGISTRY, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, scheduling_strategy=on_head()
    ).remote()


def _write_status(folder: Path, **fields: Any) -> dict[str, Any]:
    path = folder / "status.json"
    status = json.loads(path.read_text()) if path.exists() else {}
    status.update(fields, updated_at=time.time())
    write_json(path, status)
    return status


def _latest_checkpoint(folder: Path) -> str | None:
    """The Hugging Face checkpoint with the highest step among those Ray Train kept."""
    best, best_step = None, -1
    for state in folder.glob("ray/*/checkpoint_*/checkpoint/trainer_state.json"):
        step = json.loads(state.read_text()).get("global_step", -1)
        if step > best_step:
            best, best_step = str(state.parent), step
    return best


def _run(spec: JobSpec) -> None:
    """The job itself (inside the job actor): train on Ray Train, then merge and export."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .export import export_gguf
    from .loop import threads, train_worker

    folder = Path(spec.dir)
    try:
        _write_status(folder, state="running", error=None, started_at=time.time())
        log_line(folder, f"training on {spec.num_workers} worker(s) x {spec.cpus_per_worker:g} CPU")
        resources = {"CPU": spec.cpus_per_worker, **({"GPU": 1} if spec.use_gpu else {})}
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=spec.model_dump(),
            scaling_config=ScalingConfig(
                num_workers=spec.num_workers,
                use_gpu=spec.use_gpu,
                resources_per_worker=resources,
                placement_strategy=spec.placement.upper(),
            ),
            run_config=RunConfig(
                name="train",
                storage_path=str(folder / "ray"),
                # a lost node or a killed worker: Ray Train starts the workers again, from the last checkpoint
                failure_config=FailureConfig(max_failures=spec.max_failures),
                # Ray sets OMP_NUM_THREADS to the whole CPUs reserved (1 for 1.99), before torch starts
                worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads(spec.cpus_per_worker))}},
            ),
        )
        trainer.fit()
        if (folder / CANCEL).exists():
            log_line(folder, "cancelled")
            _write_status(folder, state="cancelled", finished_at=time.time())
            return
        outputs = {"model": str(folder / "model")}  # the adapter merged in already (loop.save_outputs)
        if spec.config.get("method", "lora") != "full":
            outputs["adapter"] = str(folder / "adapter")
        _write_status(folder, state="exporting")
        if spec.gguf:
            log_line(folder, f"exporting GGUF ({spec.gguf_type})")
            outputs["gguf"] = export_gguf(outputs["model"], str(folder / f"{spec.name}.gguf"), spec.gguf_type)  # type: ignore[arg-type]
        # the log first: a job whose status has ended has written all it will
        log_line(folder, "succeeded")
        _write_status(folder, state="succeeded", outputs=outputs, finished_at=time.time())
    except Exception as exc:  # recorded in the job's status, then the actor ends
        log_line(folder, "failed: " + "".join(traceback.format_exception(exc))[-4000:])
        _write_status(folder, state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())


def _start(spec: JobSpec) -> None:
    ray = _ray()

    @ray.remote(num_cpus=0)
    class TrainingJob:
        # The job runs from the constructor: the cluster owns a detached actor's creation, while a
        # method call would be owned by the caller, which may exit at once (``sft --detached``).
        def __init__(self, spec: JobSpec) -> None:
            threading.Thread(target=self.main, args=(spec,), daemon=True).start()

        def main(self, spec: JobSpec) -> None:
            try:
                _run(spec)
            finally:  # the actor ends with its job, freeing the name; as a kill, not a crash
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    TrainingJob.options(
        name=PREFIX + spec.name, namespace=NAMESPACE, lifetime="detached", scheduling_strategy=on_head()
    ).remote(spec)


def _cpus(num_workers: int, num_cpus: float | None, num_gpus: int) -> float:
    """The CPUs the job reserves: ``num_cpus``, or all that are free where its workers fit (each
    worker's share on one node). Raises ``InvalidRequestError`` naming ``num_gpus`` / ``num_cpus``
    when the cluster cannot give them (Ray would wait silently)."""
    ray = _ray()
    total, free = ray.cluster_resources(), ray.available_resources()
    if num_gpus and total.get("GPU", 0) < num_gpus:
        raise InvalidRequestError(
            f"num_gpus={num_gpus} but the cluster has {int(total.get('GPU', 0))} GPU(s); "
            "use num_gpus=0 to train on CPU",
            param="num_gpus",
        )
    have = free.get("CPU", 0.0)
    per_node = sorted((r.get("CPU", 0.0) for r in _free_per_node().values()), reverse=True) or [have]
    if num_cpus is None:  # the largest equal share that num_workers workers find room for
        cpus = max((min(have / num_workers, c) for c in per_node if _fitting(per_node, c) >= num_workers), default=0)
        cpus *= num_workers
    else:
        cpus = float(num_cpus)
    if cpus <= 0 or cpus > have + 1e-9:
        raise InvalidRequestError(
            f"the job needs {cpus:g} CPU(s) for {num_workers} worker(s) but {have:g} of the cluster's "
            f"{total.get('CPU', 0):g} are free (deployments and other jobs hold the rest); ask for fewer "
            "(num_cpus=1.9 still runs 2 threads)",
            param="num_cpus",
        )
    if _fitting(per_node, cpus / num_workers) < num_workers:
        raise InvalidRequestError(
            f"{num_workers} worker(s) of {cpus / num_workers:g} CPU each do not fit on the nodes "
            f"(free CPUs per node: {', '.join(f'{c:g}' for c in per_node)}); ask for fewer num_cpus",
            param="num_cpus",
        )
    return cpus


def _free_per_node() -> dict[str, dict[str, float]]:
    from ray._private.state import available_resources_per_node  # Ray has no public per-node view

    return available_resources_per_node()


def _fitting(per_node: list[float], share: float) -> int:
    """How many workers of ``share`` CPUs the nodes' free CPUs hold."""
    return sum(int((c + 1e-9) // share) for c in per_node) if share > 0 else 0


def start_job(
    name: str,
    kind: Literal["sft", "pretrain"],
    data_path: str,
    model_path: str,
    stage_path: str,
    *,
    num_workers: int = 1,
    num_cpus: float | None = None,
    num_gpus: int = 0,
    placement: str = "pack",
    max_failures: int = 2,
    model_params: dict[str, Any] | None = None,
    json_config: str | dict | None = None,
    gguf: bool = True,
    gguf_type: str = "f16",
) -> dict[str, Any]:
    """Check everything, then start job ``name`` detached; returns its status.

    ``num_cpus`` is the CPUs the job reserves on Ray (default: all that are free), split evenly
    among ``num_workers``; each worker trains with that many threads, rounded up (so 1.9 is 2
    threads: deployments hold a little CPU each). With ``num_gpus`` each worker takes one GPU.
    ``placement``: the workers on as few nodes as possible (``pack``) or one per node (``spread``);
    on several machines the stage folder must be one they share (Ray Train writes checkpoints there).
    ``max_failures``: how often the workers are started again after a worker or node loss, each time
    from the last checkpoint, before the job fails.

    Raises ``InvalidRequestError`` (param ``sft_name``) for a name in use, ``ModelPathError`` for a missing base model,
    ``DataFormatError`` for a bad row (its file, line and field), ``UnsupportedParameterError`` /
    ``InvalidRequestError`` for a bad hyper-parameter, and ``InvalidRequestError`` naming
    ``num_gpus`` / ``num_cpus`` / ``method`` when the cluster lacks what the job needs.
    Nothing is started or written before these checks pass.
    """
    if not name or "/" in name:
        raise InvalidRequestError(f"job name {name!r} must be non-empty and have no '/'", param="sft_name")
    if num_workers < 1:
        raise InvalidRequestError("num_workers must be >= 1", param="num_workers")
    if placement not in PLACEMENTS:
        raise InvalidRequestError(
            f"placement {placement!r} is unknown; accepted: {', '.join(PLACEMENTS)}", param="placement"
        )
    if not isinstance(max_failures, int) or isinstance(max_failures, bool) or max_failures < 0:
        raise InvalidRequestError(f"max_failures must be an integer >= 0, got {max_failures!r}", param="max_failures")
    config = training_config(model_params, json_config)
    if config.method == "qlora" and not num_gpus:
        raise InvalidRequestError(
            "method qlora quantizes the base model with bitsandbytes, which needs a GPU; use lora on CPU",
            param="method",
        )
    model_source(model_path)
    load_rows(data_path, kind)
    cpus = _cpus(num_workers, num_cpus, num_gpus)
    ray = _ray()
    registry = _registry()
    folder = Path(stage_path).expanduser().resolve() / name
    if name in _registered() or (folder / "job.json").exists():
        raise InvalidRequestError(
            f"a job named {name!r} exists; resume it (byzerllm jobs resume {name}) or pick another name",
            param="sft_name",
        )
    spec = JobSpec(
        name=name,
        kind=kind,
        model_path=model_path,
        data_path=str(Path(data_path).expanduser().resolve()),
        dir=str(folder),
        config=config.model_dump(),
        num_workers=num_workers,
        cpus_per_worker=cpus / num_workers,
        placement=placement,
        max_failures=max_failures,
        use_gpu=bool(num_gpus),
        gguf=gguf,
        gguf_type=gguf_type,
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "job.json", spec.model_dump())
    _write_status(folder, state="pending", created_at=time.time())
    ray.get(registry.put.remote(name, str(folder)))
    _start(spec)
    return job_status(name)


def _registered() -> dict[str, str]:
    """Every job the cluster's registry knows: ``{name: folder}``. The folder is the job: once it
    is removed and the job's process has ended, the job is forgotten and its name free again."""
    ray = _ray()
    jobs = ray.get(_registry().all.remote())
    return {n: f for n, f in jobs.items() if (Path(f) / "job.json").exists() or _alive(n)}


def _folder(name: str) -> Path:
    """Job ``name``'s folder; raises ``JobNotFoundError`` (listing the known jobs) for an unknown name."""
    jobs = _registered()
    if name not in jobs:
        known = sorted(jobs)
        raise JobNotFoundError(
            f"no training job named {name!r}; jobs: {', '.join(known) or 'none'}", param="name", available=known
        )
    return Path(jobs[name])


def _alive(name: str) -> bool:
    ray = _ray()
    try:
        ray.get_actor(PREFIX + name, namespace=NAMESPACE)
        return True
    except ValueError:
        return False


def job_status(name: str) -> dict[str, Any]:
    """Job ``name``'s state (pending, running, exporting, succeeded, failed, cancelled), step,
    total_steps, epoch, loss, eval_loss, tokens_per_s, eta_s (seconds), outputs (adapter, model,
    gguf paths), error and folder. A job whose process died while active reads as failed.
    Raises ``JobNotFoundError`` for an unknown name, and for a job whose folder is being removed
    or was removed while its process still runs (it ends at its next write)."""
    return _status(name, _folder(name))


def _status(name: str, folder: Path) -> dict[str, Any]:
    try:
        status = json.loads((folder / "status.json").read_text())
        spec = json.loads((folder / "job.json").read_text())
    except FileNotFoundError:
        raise JobNotFoundError(f"training job {name!r}'s folder {folder} was removed", param="name") from None
    progress_file = folder / PROGRESS
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {}
    if status.get("state") in ACTIVE and not _alive(name):
        status = _write_status(
            folder,
            state="failed",
            error=f"the job's process ended before it finished; byzerllm jobs resume {name} continues "
            "from its last checkpoint",
        )
    return {"name": name, "kind": spec["kind"], "dir": str(folder), **progress, **status}


def list_jobs() -> list[dict[str, Any]]:
    """The status of every job the cluster knows, by name (less those whose folder is gone)."""
    found = []
    for name, folder in sorted(_registered().items()):  # one read of the registry for them all
        with contextlib.suppress(JobNotFoundError):  # its folder removed meanwhile
            found.append(_status(name, Path(folder)))
    return found


def cancel_job(name: str, timeout: float = 120, wait: bool = True) -> dict[str, Any]:
    """Stop job ``name`` after its current step, with a checkpoint there for ``resume_job``, and
    return its status (``cancelled``). A job that does not stop within ``timeout`` seconds (its
    step hangs) is killed. ``wait=False`` only asks (the job stops after its step) and returns the
    status at once, still active. Raises ``JobNotFoundError`` for an unknown name and
    ``InvalidRequestError`` when it is not active.

    Cancelling is cooperative because Ray Train frees a run's workers and placement group when the
    run ends, but only a Ray dashboard's state API lets it notice a run whose driver was killed."""
    status = job_status(name)
    if status["state"] not in ACTIVE:
        raise InvalidRequestError(f"job {name!r} is {status['state']}, not running", param="name")
    folder = Path(status["dir"])
    (folder / CANCEL).touch()
    log_line(folder, "cancel asked")
    if not wait:
        return job_status(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_status(name)["state"] not in ACTIVE:
            break
        time.sleep(0.5)
    else:
        ray = _ray()
        try:
            ray.kill(ray.get_actor(PREFIX + name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass  # it ended on its own meanwhile
    if job_status(name)["state"] != "cancelled":
        log_line(folder, "cancelled")
        _write_status(folder, state="cancelled", finished_at=time.time())
    return job_status(name)


def resume_job(name: str) -> dict[str, Any]:
    """Start job ``name`` again from its last checkpoint (step, optimizer, scheduler and data
    position restored; a LoRA job resumes as LoRA); from the start when it has none. Raises
    ``JobNotFoundError`` for an unknown name and ``InvalidRequestError`` when it is active or
    already succeeded."""
    status = job_status(name)
    if status["state"] in ACTIVE or status["state"] == "succeeded":
        raise InvalidRequestError(
            f"job {name!r} is {status['state']}; only failed or cancelled jobs resume", param="name"
        )
    folder = Path(status["dir"])
    spec = JobSpec(**json.loads((folder / "job.json").read_text()))
    spec.resume_from = _latest_checkpoint(folder)
    (folder / CANCEL).unlink(missing_ok=True)
    _write_status(folder, state="pending", error=None)
    log_line(folder, f"resuming from {spec.resume_from or 'the start'}")
    _start(spec)
    return job_status(name)


def job_log(name: str) -> list[dict[str, Any]]:
    """Job ``name``'s log records, oldest first (events and the Trainer's loss records). Raises
    ``JobNotFoundError`` for an unknown name."""
    path = _folder(name) / LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def format_record(record: dict[str, Any]) -> str:
    """One log record as a line: ``HH:MM:SS`` (local time) then the event, or the Trainer's
    values as ``key=value`` (``12:00:01 step=10 loss=1.93 learning_rate=0.0002 ...``)."""
    record = dict(record)
    stamp = time.strftime("%H:%M:%S", time.localtime(record.pop("time", 0)))
    if "event" in record:
        return f"{stamp} {record['event']}"
    return f"{stamp} " + " ".join(f"{k}={v}" for k, v in record.items())


def loss_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The losses in ``job_log`` records as ``[{"step", "loss", "eval_loss"}]`` by step (either loss
    None when that step logged only the other). A step logged twice (a job resumed from an earlier
    checkpoint trains it again) keeps its latest values."""
    points: dict[int, dict[str, Any]] = {}
    for r in records:
        if "step" not in r or ("loss" not in r and "eval_loss" not in r):
            continue
        point = points.setdefault(r["step"], {"step": r["step"], "loss": None, "eval_loss": None})
        point.update({k: r[k] for k in ("loss", "eval_loss") if k in r})
    return [points[s] for s in sorted(points)]


def wait_job(name: str, timeout: float = 3600, poll: float = 1.0) -> dict[str, Any]:
    """Block until job ``name`` is no longer active; returns its status. Raises
    ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = job_status(name)
        if status["state"] not in ACTIVE:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name!r} still {status['state']} after {timeout:g}s")
        time.sleep(poll)
