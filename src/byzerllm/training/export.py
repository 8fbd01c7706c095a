"""A trained adapter merged into its base model, and a model folder exported to GGUF."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

from ..errors import BackendError, InvalidRequestError, ModelPathError
from .models import load_model, load_tokenizer, save_model

OutType = Literal["f32", "f16", "bf16", "q8_0"]


def merge_lora(base_model_path: str, adapter_path: str, target_path: str) -> str:
    """Fold the LoRA adapter at ``adapter_path`` into the base model at ``base_model_path`` (a
    Hugging Face folder or a GGUF, as training took it) and save a plain Hugging Face folder with
    the tokenizer and chat template at ``target_path``; returns ``target_path``. Raises
    ``ModelPathError`` when the base or the adapter is missing."""
    from peft import PeftModel

    if not (Path(adapter_path) / "adapter_config.json").is_file():
        raise ModelPathError(
            f"{adapter_path} is not a LoRA adapter (no adapter_config.json)", param="adapter_path", path=adapter_path
        )
    tokenizer = load_tokenizer(base_model_path)
    merged = PeftModel.from_pretrained(load_model(base_model_path), adapter_path).merge_and_unload()
    return save_model(merged, tokenizer, target_path)


def converter() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``, which ``scripts/install.sh`` takes from the
    llama-cpp-python sdist (the same llama.cpp as the engine) into ``<venv>/share/byzerllm``;
    ``BYZERLLM_GGUF_CONVERTER`` points elsewhere. Raises ``BackendError`` when it is missing."""
    path = Path(os.environ.get("BYZERLLM_GGUF_CONVERTER") or Path(sys.prefix) / "share/byzerllm/convert_hf_to_gguf.py")
    if not path.is_file():
        raise BackendError(f"llama.cpp's GGUF converter is not installed at {path}: run scripts/install.sh")
    return path


def export_gguf(model_folder: str, target: str, outtype: OutType = "f16") -> str:
    """Convert the Hugging Face model folder ``model_folder`` to the GGUF file ``target`` (weights
    as ``outtype``; the tokenizer and chat template go into its metadata) with llama.cpp's own
    converter; returns ``target``. Raises ``ModelPathError`` for a folder that is not a model,
    ``InvalidRequestError`` for an unknown ``outtype`` and ``BackendError`` when conversion fails."""
    if outtype not in ("f32", "f16", "bf16", "q8_0"):
        raise InvalidRequestError(f"unknown GGUF type {outtype!r}; accepted: f32, f16, bf16, q8_0", param="outtype")
    if not (Path(model_folder) / "config.json").is_file():
        raise ModelPathError(
            f"{model_folder} is not a Hugging Face model folder (no config.json)", param="model_path", path=model_folder
        )
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{target}.partial"
    proc = subprocess.run(
        [sys.executable, str(converter()), model_folder, "--outfile", partial, "--outtype", outtype],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        Path(partial).unlink(missing_ok=True)
        raise BackendError(f"GGUF conversion of {model_folder} failed: {proc.stderr.strip()[-2000:]}")
    os.replace(partial, target)  # a reader never finds half a GGUF
    return target
