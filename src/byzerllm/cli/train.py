"""``byzerllm sft | pretrain``, ``byzerllm jobs list | status | logs | cancel | resume``,
``byzerllm merge`` and ``byzerllm export``: training jobs from the command line."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..errors import ByzerLLMError, InvalidRequestError
from ..runtime.spec import PLACEMENTS
from .common import _connect, _opt, handle_errors

out = Console(highlight=False)


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidRequestError(f"--param {pair!r} must be name=value", param="param")
        params[key.strip()] = value.strip()
    return params


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}:{s:02d}"


def follow(name: str, poll: float = 1.0) -> dict:
    """Show job ``name``'s progress (step/total, loss, tokens/s, ETA) until it ends; returns its
    status. Ctrl-C stops following, not the job."""
    from ..training import jobs

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}")]
    try:
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(name, total=None, info="")
            while True:
                s = jobs.job_status(name)
                loss = f"loss {s['loss']:.4f}" if s.get("loss") is not None else "loss -"
                speed = f"{s['tokens_per_s']:.0f} tok/s" if s.get("tokens_per_s") else "- tok/s"
                info = f"{s['state']}  {loss}  {speed}  ETA {_eta(s.get('eta_s'))}"
                bar.update(task, total=s.get("total_steps") or None, completed=s.get("step") or 0, info=info)
                if s["state"] not in jobs.ACTIVE:
                    return s
                time.sleep(poll)
    except KeyboardInterrupt:
        click.echo(f"stopped following; the job goes on (byzerllm jobs status {name})", err=True)
        return jobs.job_status(name)


def _report(status: dict) -> None:
    if status["state"] == "succeeded":
        for key, path in status.get("outputs", {}).items():
            click.echo(f"{key}: {path}")
    elif status["state"] in ("failed", "cancelled"):
        raise ByzerLLMError(f"job {status['name']} {status['state']}: {status.get('error') or ''}".rstrip(": "))


def _train_command(kind: str):
    @click.command(name=kind)
    @_opt("name", required=True, help="Job name (unique on the cluster).")
    @_opt("data", required=True, help="data.jsonl, a folder of .jsonl/.parquet/.csv/.txt files, or one file.")
    @_opt("model", default="builtin:smollm2", show_default=True, help="Base model: HF folder, GGUF or builtin:smollm2.")
    @_opt("stage", default="/tmp/byzerllm", show_default=True, help="Folder the job writes into (<stage>/<name>).")
    @_opt("method", default="lora", show_default=True, type=click.Choice(["lora", "full", "qlora"]))
    @_opt("epochs", default=None, type=float, help="num_train_epochs (default 1).")
    @_opt("max_steps", default=None, type=int, help="Stop after this many steps.")
    @_opt("learning_rate", default=None, type=float, help="Peak learning rate (default 2e-4).")
    @_opt("batch_size", default=None, type=int, help="per_device_train_batch_size (default 1).")
    @_opt("grad_accum", default=None, type=int, help="gradient_accumulation_steps (default 16).")
    @_opt("max_seq_length", default=None, type=int, help="Tokens per row (default 1024).")
    @_opt("lora_rank", default=None, type=int, help="LoRA r (default 64).")
    @_opt("save_steps", default=None, type=int, help="Steps between checkpoints (default 500).")
    @_opt("param", multiple=True, help="Any TrainingConfig field or sft.<type>.<name> key: name=value (repeatable).")
    @_opt("num_workers", default=1, type=int, show_default=True, help="Ray Train workers.")
    @_opt("num_cpus", default=None, type=float, help="CPUs of the whole job (default: all free ones).")
    @_opt("num_gpus", default=0, type=int, show_default=True, help="GPUs (one per worker).")
    @_opt(
        "placement",
        default="pack",
        show_default=True,
        type=click.Choice(PLACEMENTS),
        help="Workers on as few nodes as possible, or one per node.",
    )
    @_opt(
        "max_failures",
        default=2,
        type=int,
        show_default=True,
        help="Restarts from the last checkpoint after a worker or node loss.",
    )
    @click.option("--gguf/--no-gguf", default=True, show_default=True, help="Export a GGUF at the end.")
    @click.option("--detached", is_flag=True, help="Start the job and return; do not follow it.")
    @_opt("ray_address", default="auto", show_default=True)
    @handle_errors
    def command(name, data, model, stage, method, epochs, max_steps, learning_rate, batch_size, grad_accum,
                max_seq_length, lora_rank, save_steps, param, num_workers, num_cpus, num_gpus, placement,
                max_failures, gguf, detached, ray_address):  # fmt: skip
        from ..training import jobs

        named = {
            "method": method,
            "num_train_epochs": epochs,
            "max_steps": max_steps,
            "learning_rate": learning_rate,
            "per_device_train_batch_size": batch_size,
            "gradient_accumulation_steps": grad_accum,
            "max_seq_length": max_seq_length,
            "lora_rank": lora_rank,
            "save_steps": save_steps,
        }
        params = {k: v for k, v in named.items() if v is not None} | _params(param)
        _connect(ray_address, start_local=True)
        status = jobs.start_job(
            name, kind, data, model, stage, num_workers=num_workers, num_cpus=num_cpus, num_gpus=num_gpus,
            placement=placement, max_failures=max_failures, model_params=params, gguf=gguf,
        )  # fmt: skip
        click.echo(f"started job {name} in {status['dir']}", err=True)
        if detached:
            click.echo(f"follow it with: byzerllm jobs status {name} --follow", err=True)
            return
        _report(follow(name))

    command.help = (
        "Fine-tune a model on chat data as a Ray Train job (LoRA by default)."
        if kind == "sft"
        else "Continue pre-training a model on raw text as a Ray Train job."
    )
    return command


sft = _train_command("sft")
pretrain = _train_command("pretrain")


@click.group()
def jobs() -> None:
    """Training jobs: list, status, logs, cancel, resume."""


@jobs.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def jobs_list(as_json, ray_address):
    """Every training job on the cluster with its state and progress."""
    from rich.table import Table

    from ..training import jobs as training

    _connect(ray_address)
    found = training.list_jobs()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table("name", "kind", "state", "step", "loss", "folder")
    for s in found:
        loss = f"{s['loss']:.4f}" if s.get("loss") is not None else "-"
        table.add_row(
            s["name"], s["kind"], s["state"], f"{s.get('step', 0)}/{s.get('total_steps', '?')}", loss, s["dir"]
        )
    out.print(table)


@jobs.command(name="status")
@click.argument("name")
@click.option("--follow", "follow_", is_flag=True, help="Show a progress bar until the job ends.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def jobs_status(name, follow_, ray_address):
    """A job's state, step, losses, tokens/s, ETA and outputs, as JSON."""
    from ..training import jobs as training

    _connect(ray_address)
    status = follow(name) if follow_ else training.job_status(name)
    click.echo(json.dumps(status, indent=2))


@jobs.command(name="logs")
@click.argument("name")
@_opt("tail", default=0, type=int, help="Only the last N records.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def jobs_logs(name, tail, ray_address):
    """A job's events and loss records, one per line."""
    from ..training import jobs as training

    _connect(ray_address)
    records = training.job_log(name)
    for record in records[-tail:] if tail else records:
        click.echo(training.format_record(record))


@jobs.command(name="cancel")
@click.argument("name")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def jobs_cancel(name, ray_address):
    """Stop a running job; its checkpoints stay for resume."""
    from ..training import jobs as training

    _connect(ray_address)
    status = training.cancel_job(name)
    click.echo(f"job {name} {status['state']} at step {status.get('step', 0)}")


@jobs.command(name="resume")
@click.argument("name")
@click.option("--detached", is_flag=True, help="Start and return; do not follow.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def jobs_resume(name, detached, ray_address):
    """Start a failed or cancelled job again from its last checkpoint."""
    from ..training import jobs as training

    _connect(ray_address)
    training.resume_job(name)
    click.echo(f"resumed job {name}", err=True)
    if not detached:
        _report(follow(name))


@click.command()
@_opt("base", required=True, help="The base model the adapter was trained on (HF folder, GGUF, builtin:...).")
@_opt("adapter", required=True, help="The LoRA adapter folder (a job's adapter/).")
@_opt("output", required=True, help="Folder for the merged Hugging Face model.")
@handle_errors
def merge(base, adapter, output):
    """Merge a LoRA adapter into its base model (a Hugging Face folder the transformers backend serves)."""
    from ..training.export import merge_lora

    click.echo(merge_lora(base, adapter, output))


@click.command()
@click.argument("source")
@click.option("--format", "fmt", default="gguf", show_default=True, type=click.Choice(["hf", "gguf"]))
@_opt("output", required=True, help="Target file (gguf) or folder (hf).")
@_opt("outtype", default="f16", show_default=True, type=click.Choice(["f32", "f16", "bf16", "q8_0"]))
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def export(source, fmt, output, outtype, ray_address):
    """Export a model folder, or the model a finished job trained (SOURCE is its name), as a
    Hugging Face folder or a GGUF file."""
    from ..training.export import export_gguf

    folder = Path(source)
    if not folder.is_dir():
        from ..training import jobs as training

        _connect(ray_address)
        status = training.job_status(source)
        if "model" not in status.get("outputs", {}):
            raise InvalidRequestError(f"job {source!r} is {status['state']} and has no model yet", param="source")
        folder = Path(status["outputs"]["model"])
    if fmt == "gguf":
        click.echo(export_gguf(str(folder), output, outtype))
    else:
        shutil.copytree(folder, output, dirs_exist_ok=False)
        click.echo(output)
