"""What each Ray Train worker runs: TRL's ``SFTTrainer`` (with peft for LoRA) on this job's data,
reporting progress to the job folder and checkpoints to Ray Train."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

PROGRESS = "progress.json"
LOG = "train.log"
CANCEL = "cancel"  # present while a cancel is asked for


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` at once (a reader never sees half a file)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def threads(cpus: float) -> int:
    """The torch threads of a worker that reserves ``cpus`` CPUs: rounded up, so 1.99 is 2."""
    return max(1, math.ceil(cpus - 1e-6))


def _agreed(flag: bool) -> bool:
    """Rank 0's ``flag`` on every worker, so all of them stop at the same step (a worker that went
    on alone would wait forever for the others' gradients)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)])
    dist.broadcast(value, src=0)
    return bool(value.item())


class Progress(TrainerCallback):
    """Writes step, epoch, losses, tokens/s and ETA to ``progress.json`` (rank 0, at most once a
    second and at every log), appends each log record to ``train.log``, and hands every checkpoint
    the Trainer saves to Ray Train (``ray.train.report``), which keeps it for ``resume``.

    A cancel (the ``cancel`` file in the job folder) stops training after the current step with a
    checkpoint there, so the run ends cleanly (Ray Train frees its workers) and resumes at that
    step."""

    def __init__(self, folder: Path, on_ray: bool = True) -> None:
        self.folder = folder
        self.on_ray = on_ray  # False: the same trainer run without Ray (bench/train.py's reference)
        self.record: dict[str, Any] = {}
        self.last_write = 0.0
        self.cancelled = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.start_step = time.monotonic(), state.global_step
        self.record.update(total_steps=state.max_steps, step=state.global_step, started_step=state.global_step)
        self._write(state, force=True)

    def on_step_end(self, args, state, control, **kwargs):
        self._write(state)
        if _agreed(state.is_world_process_zero and (self.folder / CANCEL).exists()):
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.record["loss"] = logs["loss"]
        if "eval_loss" in logs:
            self.record["eval_loss"] = logs["eval_loss"]
        if "num_tokens" in logs:  # TRL's count of tokens trained on, all workers together
            self.record["tokens"] = logs["num_tokens"]
        if state.is_world_process_zero:
            with (self.folder / LOG).open("a") as f:
                f.write(json.dumps({"time": time.time(), "step": state.global_step, **logs}) + "\n")
        self._write(state, force=True)

    def on_save(self, args, state, control, **kwargs):
        if not self.on_ray:
            return
        import ray.train
        from transformers.trainer_utils import get_last_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            source = get_last_checkpoint(args.output_dir) if state.is_world_process_zero else None
            if source:
                shutil.copytree(source, Path(tmp, "checkpoint"))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({"step": state.global_step, "loss": self.record.get("loss")}, checkpoint=checkpoint)

    def _write(self, state, force: bool = False) -> None:
        now = time.monotonic()
        if not state.is_world_process_zero or (not force and now - self.last_write < 1.0):
            return
        self.last_write = now
        elapsed = now - self.start
        done = state.global_step - self.start_step
        tokens = self.record.get("tokens")
        self.record.update(
            step=state.global_step,
            epoch=state.epoch,
            tokens_per_s=tokens / elapsed if tokens and elapsed > 0 and done else None,
            eta_s=(state.max_steps - state.global_step) * elapsed / done if done else None,
            updated_at=time.time(),
        )
        write_json(self.folder / PROGRESS, self.record)


def _dataset(spec: dict[str, Any], tokenizer: Any, cfg: Any):
    from datasets import Dataset

    from .data import encode_chat, load_rows

    rows = load_rows(spec["data_path"], spec["kind"])
    if spec["kind"] == "pretrain":
        ds = Dataset.from_list([{"text": t} for t in rows])
    else:
        ds = Dataset.from_list([encode_chat(tokenizer, m, cfg.max_seq_length) for m in rows])
    if cfg.eval_split and len(ds) >= 2:
        split = ds.train_test_split(test_size=cfg.eval_split, seed=cfg.seed)
        return split["train"], split["test"]
    return ds, None


def build_trainer(spec: dict[str, Any], on_ray: bool = True) -> tuple[Any, Progress]:
    """TRL's ``SFTTrainer`` for job ``spec`` (see ``jobs.JobSpec``) and its ``Progress`` callback."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from .config import TrainingConfig
    from .models import load_model, load_tokenizer

    torch.set_num_threads(threads(spec["cpus_per_worker"]))
    cfg = TrainingConfig(**spec["config"])
    folder = Path(spec["dir"])
    tokenizer = load_tokenizer(spec["model_path"])
    model = load_model(spec["model_path"])
    train, evaluation = _dataset(spec, tokenizer, cfg)
    gpu = spec["use_gpu"]
    args = SFTConfig(
        output_dir=str(folder / "work"),
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_seq_length,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if evaluation is not None else "no",
        eval_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        packing=cfg.packing if cfg.packing is not None else spec["kind"] == "pretrain",
        # pre-training text is one stream cut into full sequences; chat rows stay whole
        packing_strategy="wrapped" if spec["kind"] == "pretrain" else "bfd",
        dataset_text_field="text",
        gradient_checkpointing=cfg.gradient_checkpointing,
        optim=cfg.optim,
        fp16=cfg.fp16 and gpu,
        bf16=cfg.bf16 and gpu,
        use_cpu=not gpu,
        report_to=[],
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
    )
    peft = None
    if cfg.method != "full":
        peft = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    progress = Progress(folder, on_ray)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[progress],
    )
    return trainer, progress


def save_outputs(trainer: Any, folder: Path, base: str, lora: bool) -> None:
    """Save what a finished run made: for LoRA the adapter (``adapter/``, with the ``base`` model
    path in ``byzerllm_base.json`` so ``deploy`` can serve the adapter itself) and the base with the
    adapter merged in (``model/``), else the trained model (``model/``); each with the tokenizer
    and its chat template. Merging here, where the model is loaded, saves loading it again."""
    tokenizer = trainer.processing_class
    if lora:
        trainer.save_model(str(folder / "adapter"))
        tokenizer.save_pretrained(str(folder / "adapter"))
        (folder / "adapter" / "byzerllm_base.json").write_text(json.dumps({"base_model_path": base}))
        trainer.model.merge_and_unload().save_pretrained(str(folder / "model"))
    else:
        trainer.save_model(str(folder / "model"))
    tokenizer.save_pretrained(str(folder / "model"))


def _single_process() -> None:
    """Let a one-worker job train as one plain process: Ray Train sets up a process group even for
    one worker, with which transformers wraps the model in DDP and syncs every step for nothing
    (measured: 0.83x the speed of the same trainer without Ray)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() == 1:
        dist.destroy_process_group()
        for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)


def train_worker(spec: dict[str, Any]) -> None:
    """The training function of one Ray Train worker (``spec``: see ``jobs.JobSpec``): train,
    from the last checkpoint when there is one, then save the adapter (or the model) on rank 0."""
    import ray
    import ray.train

    _single_process()
    trainer, progress = build_trainer(spec)
    folder = Path(spec["dir"])
    checkpoint = ray.train.get_checkpoint()  # set when Ray Train restarts a failed run
    # as_directory: used in place on a local or shared path; a copy (removed after) only from s3, gs...
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as restored:
        resume = str(Path(restored) / "checkpoint") if restored else spec.get("resume_from")
        rank = ray.train.get_context().get_world_rank()
        node = ray.get_runtime_context().get_node_id()
        event = f"rank {rank} on node {node[:12]}" + (f", resuming from {resume}" if resume else "")
        with (folder / LOG).open("a") as f:  # where each rank runs, for `jobs logs` and cluster checks
            f.write(json.dumps({"time": time.time(), "event": event, "rank": rank, "node_id": node, "resume": resume}))
            f.write("\n")
        trainer.train(resume_from_checkpoint=resume)
    if trainer.is_world_process_zero() and not progress.cancelled:
        save_outputs(trainer, folder, spec["model_path"], lora=spec["config"].get("method") != "full")
    ray.train.report({"step": trainer.state.global_step, "cancelled": progress.cancelled})
