"""The trainer each Ray Train worker builds, run in-process on a tiny random Llama folder: full
fine-tuning with an eval split, LoRA with a cancel, and pre-training with packing."""

from __future__ import annotations

import json
from pathlib import Path

from byzerllm.backends import create_backend
from byzerllm.backends.models import default_backend_for
from byzerllm.training.config import training_config
from byzerllm.training.jobs import JobSpec
from byzerllm.training.loop import CANCEL, PROGRESS, build_trainer, save_outputs
from byzerllm.types import ChatRequest


def spec(tmp_path, model, kind, rows, **params) -> dict:
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / "job"
    folder.mkdir()
    config = training_config(
        {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
         "save_steps": 100, "max_seq_length": 64, **params}
    )  # fmt: skip
    return JobSpec(
        name="t", kind=kind, model_path=str(model), data_path=str(data), dir=str(folder),
        config=config.model_dump(), cpus_per_worker=1,
    ).model_dump()  # fmt: skip


CHAT = [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(8)]


def progress(s: dict) -> dict:
    return json.loads((Path(s["dir"]) / PROGRESS).read_text())


def test_full_fine_tuning_with_an_eval_split_changes_every_weight_and_reports_both_losses(tmp_path, tiny_llama):
    s = spec(tmp_path, tiny_llama, "sft", CHAT, method="full", max_steps=3, eval_split=0.25, learning_rate=1e-3)
    trainer, _ = build_trainer(s, on_ray=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert len(trainer.train_dataset) == 6 and len(trainer.eval_dataset) == 2
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(not before[n].equal(after[n].detach()) for n in ("model.embed_tokens.weight", "lm_head.weight"))
    p = progress(s)
    assert p["step"] == p["total_steps"] == 3
    assert p["loss"] > 0 and p["eval_loss"] > 0 and p["tokens"] > 0 and p["eta_s"] == 0
    log = [json.loads(line) for line in (tmp_path / "job" / "train.log").read_text().splitlines()]
    assert any("eval_loss" in r for r in log) and any("loss" in r for r in log)


def test_lora_trains_only_the_adapter_and_a_cancel_stops_after_the_step_with_a_checkpoint(tmp_path, tiny_llama):
    s = spec(tmp_path, tiny_llama, "sft", CHAT, max_steps=8, lora_rank=4)
    trainer, callback = build_trainer(s, on_ray=False)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    (tmp_path / "job" / CANCEL).touch()
    trainer.train()
    assert callback.cancelled and trainer.state.global_step == 1
    assert (tmp_path / "job" / "work" / "checkpoint-1" / "adapter_config.json").is_file()
    save_outputs(trainer, tmp_path / "job", str(tiny_llama), lora=True)
    adapter = tmp_path / "job" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    merged = tmp_path / "job" / "model"
    assert (merged / "config.json").is_file() and (merged / "tokenizer_config.json").is_file()
    assert not (merged / "adapter_config.json").exists()  # a plain model: the adapter is folded in

    # the adapter deploys by itself: on transformers (its default), over the base it records
    assert default_backend_for(str(adapter)) == "transformers"
    served = create_backend("transformers", str(adapter), {"n_threads": 1})
    assert served.meta()["model_name"] == "adapter"
    chunks = list(
        served.stream(
            ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=3, extra={"ignore_eos": True})
        )
    )
    assert chunks[-1].generated_tokens == 3


def test_pretraining_packs_raw_text_into_full_sequences(tmp_path, tiny_llama):
    texts = [{"text": f"Document {i}: the river Vexo runs purple past the town of Lutz."} for i in range(12)]
    s = spec(tmp_path, tiny_llama, "pretrain", texts, max_steps=2, max_seq_length=32)
    trainer, _ = build_trainer(s, on_ray=False)
    lengths = {len(row["input_ids"]) for row in trainer.train_dataset}
    assert max(lengths) == 32 and len(trainer.train_dataset) < len(texts)  # rows joined, then cut
    trainer.train()
    assert progress(s)["step"] == 2
