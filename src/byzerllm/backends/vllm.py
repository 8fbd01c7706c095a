"""Hugging Face model folders on vLLM's OpenAI-compatible server, an engine process per worker
(``InferBackend.VLLM``, ``--infer_backend vllm`` / ``ray/vllm`` in the Byzer-LLM documents). vLLM needs
an NVIDIA GPU: deploying it on a machine without one is refused with the alternatives."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError, ModelPathError
from .engine import EngineBackend
from .options import BackendOptions


class VLLMOptions(BackendOptions):
    """The ``backend.*`` options of the Byzer-LLM documents, as vLLM's server flags."""

    max_model_len: int | None = Field(None, ge=1, description="context length in tokens (--max-model-len)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of GPU memory vLLM may take")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over")
    quantization: str | None = Field(None, description="awq, gptq, fp8... (--quantization)")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = Field(
        "auto", description="weights dtype"
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="sequences decoded together (default: the deployment's worker_concurrency)"
    )
    trust_remote_code: bool = Field(False, description="run the model folder's own code")
    enforce_eager: bool = Field(False, description="no CUDA graphs (less memory, slower)")
    timeout: float = Field(600.0, gt=0, description="seconds a request may take")
    start_timeout: float = Field(900.0, gt=0, description="seconds vLLM may take to load the model")
    extra_args: list[str] | None = Field(None, description="more vLLM server flags, as on its command line")


def vllm_command(python: str, model: str, port: int, cfg: dict[str, Any]) -> list[str]:
    """vLLM's OpenAI server for ``model`` on ``port``, serving it as ``default``."""
    flags = {
        "--max-model-len": cfg["max_model_len"],
        "--gpu-memory-utilization": cfg["gpu_memory_utilization"],
        "--tensor-parallel-size": cfg["tensor_parallel_size"],
        "--quantization": cfg["quantization"],
        "--dtype": cfg["dtype"],
        "--max-num-seqs": cfg["max_num_seqs"],
    }
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "default"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    for flag, value in flags.items():
        if value is not None:
            cmd += [flag, str(value)]
    cmd += [
        flag
        for flag, on in (("--trust-remote-code", cfg["trust_remote_code"]), ("--enforce-eager", cfg["enforce_eager"]))
        if on
    ]
    return cmd + list(cfg["extra_args"] or [])


def gpu_count() -> int:
    """NVIDIA GPUs visible here (through torch when it is a CUDA build, else ``nvidia-smi``)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    return 1 if shutil.which("nvidia-smi") else 0


class VLLMBackend(EngineBackend):
    """Chat on a vLLM server this worker starts (see ``EngineBackend``). Raises ``BackendError`` on a
    machine without an NVIDIA GPU or without the ``vllm`` package, ``ModelPathError`` for a missing
    model folder."""

    name = "vllm"
    engine_name = "vllm"
    Options = VLLMOptions

    @classmethod
    def deploy_options(cls, options: dict[str, Any], worker_concurrency: int) -> dict[str, Any]:
        """``max_num_seqs`` follows the deployment's ``worker_concurrency`` unless set."""
        has = options.get("max_num_seqs") is not None
        return options if has else {**options, "max_num_seqs": worker_concurrency}

    def prepare(self, model_path: str) -> None:
        if gpu_count() == 0:
            raise BackendError(
                "the vllm backend needs an NVIDIA GPU (CUDA) and this machine has none; on CPU deploy a GGUF "
                "model with infer_backend llama_server (continuous batching) or llama_cpp"
            )
        if importlib.util.find_spec("vllm") is None:
            raise BackendError("the vllm backend needs the vllm package: pip install vllm")
        if not Path(model_path).is_dir():
            raise ModelPathError(f"vllm serves a model folder; {model_path!r} is not one", param="model_path")
        self.path = model_path

    def command(self, port: int) -> list[str]:
        return vllm_command(sys.executable, self.path, port, self.config)

    def engine_meta(self) -> dict[str, Any]:
        # a vision or audio model reads those parts; vLLM itself refuses them for a text-only model
        return {
            "model_path": self.path,
            "max_model_len": self.config["max_model_len"],
            "input_modalities": ["text", "image", "audio"],
        }
