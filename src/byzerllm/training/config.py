"""A training job's hyper-parameters: one typed declaration (``TrainingConfig``), read from the
real package's ``model_params`` (``sft.<type>.<name>`` keys) and ``json_config``, or from the CLI.

Defaults follow Byzer-LLM's ``DEFAULT_QLORA_CONFIG`` (``byzerllm/utils/sft/__init__.py``) except
where it cannot work here: ``warmup_steps`` is 0 (3000 warm-up steps outlast most runs), ``fp16``
is off on CPU, ``optim`` is ``adamw_torch`` (``paged_adamw_32bit`` needs bitsandbytes and a GPU)
and ``logging_steps`` is 10 so a followed job shows its loss early.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequestError, UnsupportedParameterError
from ..params import closest

Method = Literal["lora", "full", "qlora"]


class TrainingConfig(BaseModel):
    """Hyper-parameters of a fine-tuning or pre-training job (names as in Hugging Face's
    ``TrainingArguments`` and Byzer-LLM's ``sft.*`` keys)."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field("lora", description="lora (adapter), full (every weight) or qlora (4-bit base, GPU)")
    num_train_epochs: float = Field(1, gt=0, description="passes over the data")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: by epochs)")
    per_device_train_batch_size: int = Field(1, ge=1, description="rows per step on each worker")
    gradient_accumulation_steps: int = Field(16, ge=1, description="steps whose gradients add up to one update")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    lr_scheduler_type: str = Field("cosine", description="Hugging Face scheduler name")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(0.3, gt=0, description="gradient clipping norm")
    max_seq_length: int = Field(1024, ge=8, description="tokens per row (longer rows are cut)")
    logging_steps: int = Field(10, ge=1, description="steps between loss records")
    save_steps: int = Field(500, ge=1, description="steps between checkpoints (resume starts at the last one)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    seed: int = Field(42, description="seed of data order, dropout and initialisation")
    lora_rank: int = Field(64, ge=1, description="LoRA rank r")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (scale alpha/r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = Field("all-linear", description="modules LoRA adapts")
    eval_split: float = Field(0.0, ge=0, lt=1, description="fraction of rows held out for the eval loss")
    packing: bool | None = Field(None, description="pack rows into full sequences (default: on for pretrain)")
    gradient_checkpointing: bool = False
    optim: str = Field("adamw_torch", description="Hugging Face optimizer name")
    fp16: bool = Field(False, description="half precision (GPU only; ignored on CPU)")
    bf16: bool = Field(False, description="bfloat16 (ignored on CPU)")


# the real package's keys that mean nothing here: accepted and ignored
IGNORED = {"report_to", "disable_tqdm", "dataloader_num_workers", "save_strategy", "remove_unused_columns",
           "model_type", "skipCopyPretrainedModel", "tokenizer_path", "setup_nccl_socket_ifname_by_ip"}  # fmt: skip
# Byzer-LLM's pre-training names for the same things
ALIASES = {"max_length": "max_seq_length", "epoches": "num_train_epochs"}
CASTS = {"int": int, "float": float, "str": str, "list": json.loads, "dict": json.loads}


def _typed(kind: str, value: Any, key: str) -> Any:
    if kind == "bool":  # the real parser compares with "true" only, so True became False there
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise InvalidRequestError(f"{key} must be true or false, not {value!r}", param=key)
    if kind in ("list", "dict") and not isinstance(value, str):
        return value
    if kind not in CASTS:
        raise InvalidRequestError(
            f"{key}: unknown type {kind!r}; accepted: {', '.join(sorted([*CASTS, 'bool']))}", param=key
        )
    try:
        return CASTS[kind](value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{key}: {value!r} is not a {kind} ({exc})", param=key) from None


def training_config(
    model_params: dict[str, Any] | None = None, json_config: str | dict | None = None
) -> TrainingConfig:
    """The ``TrainingConfig`` of Byzer-LLM's ``sft(json_config=..., model_params=...)``: the
    defaults, then ``json_config`` (a JSON object of field names), then ``model_params`` (keys
    ``sft.<int|float|bool|str|list|dict>.<name>``, ``sfft.*`` for pre-training, or plain field
    names). Stricter than the real package, which ignores unknown keys: an unknown name raises
    ``UnsupportedParameterError`` naming the closest field, a bad value ``InvalidRequestError``."""
    values: dict[str, Any] = {}
    if json_config:
        try:
            loaded = json.loads(json_config) if isinstance(json_config, str) else dict(json_config)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"json_config is not JSON: {exc.msg}", param="json_config") from None
        if not isinstance(loaded, dict):
            raise InvalidRequestError("json_config must be a JSON object", param="json_config")
        values.update(loaded)
    for key, value in (model_params or {}).items():
        parts = key.split(".")
        if parts[0] in ("sft", "sfft") and len(parts) >= 3:
            values[parts[2]] = _typed(parts[1], value, key)
        else:
            values[key] = value
    fields = TrainingConfig.model_fields
    checked: dict[str, Any] = {}
    for name, value in values.items():
        name = ALIASES.get(name, name)
        if name in IGNORED:
            continue
        if name not in fields:
            near = closest(name, set(fields))
            raise UnsupportedParameterError(
                f"unknown training parameter {name!r}" + (f"; did you mean {near!r}?" if near else ""),
                param=name,
                accepted=sorted(fields),
            )
        checked[name] = value
    try:
        return TrainingConfig(**checked)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise InvalidRequestError(f"training parameter {field}: {err['msg']}", param=field) from None
