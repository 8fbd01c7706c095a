"""Loading a base model for training and saving trained models so ``deploy`` can serve them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends.models import forget_gguf_quantization, resolve_model_path
from ..errors import ModelPathError


def model_source(model_path: str) -> tuple[str, str | None]:
    """``(folder, gguf_file)`` for ``from_pretrained``: a Hugging Face folder (``gguf_file`` None),
    or a GGUF file (``builtin:smollm2`` included) loaded through transformers' GGUF support.
    Raises ``ModelPathError`` when the path is missing or is a folder without ``config.json``."""
    path = Path(resolve_model_path(model_path))
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelPathError(
                f"{path} is a file but not a GGUF; give a GGUF file or a Hugging Face model folder",
                param="local_model_path",
                path=str(path),
            )
        return str(path.parent), path.name
    if not (path / "config.json").is_file():
        raise ModelPathError(
            f"{path} is not a Hugging Face model folder (no config.json)", param="local_model_path", path=str(path)
        )
    return str(path), None


def load_tokenizer(model_path: str) -> Any:
    """The tokenizer (with its chat template) of ``model_path``."""
    from transformers import AutoTokenizer

    folder, gguf = model_source(model_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    if tokenizer.pad_token is None:  # padding needs a token; it is masked out of the loss
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: str, dtype: str = "float32") -> Any:
    """The causal LM at ``model_path`` as a plain trainable model (a GGUF dequantized:
    ``forget_gguf_quantization``)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder, gguf = model_source(model_path)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=getattr(torch, dtype))
    return forget_gguf_quantization(model) if gguf else model


def save_model(model: Any, tokenizer: Any, folder: str | Path) -> str:
    """Save ``model`` and ``tokenizer`` (its chat template included, so serving renders prompts as
    training did) as a Hugging Face folder; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
