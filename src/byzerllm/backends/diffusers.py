"""Text-to-image on diffusers: Stable Diffusion pipeline folders (torch, CPU or CUDA).

The model is a diffusers pipeline folder (``model_index.json`` with its component folders, as
``save_pretrained`` writes it): Stable Diffusion 1.x / 2.x, SDXL, or any other text-to-image
pipeline ``AutoPipelineForText2Image`` knows. The sampler is chosen by Byzer-LLM's
``generation.sampler_name`` names (``SAMPLERS``), each a diffusers scheduler built from the
folder's own scheduler config. Images come back as PNG bytes (Pillow), one per image asked.

The safety checker is off: a folder's ``safety_checker`` component (SD 1.x) is not loaded, so
images are returned as drawn, never blacked out. Whoever deploys a model answers for what it draws.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..errors import BackendError, InvalidRequestError, ModelPathError
from ..types import ChatChunk, ChatRequest, ImageRequest, ImageResponse
from .base import Backend, Cancelled, _never
from .models import resolve_model_path
from .options import BackendOptions

# Byzer-LLM's ``generation.sampler_name`` values -> (diffusers scheduler class, its extra config);
# the names of the A1111 web UI ("euler_a" is "Euler a"), karras: Karras et al. 2022's noise levels
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2-a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm++_2m": ("DPMSolverMultistepScheduler", {}),
    "dpm++_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "heun": ("HeunDiscreteScheduler", {}),
    "heun_karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
SamplerName = Literal[
    "euler_a",
    "euler",
    "ddim",
    "ddpm",
    "deis",
    "dpm2",
    "dpm2-a",
    "dpm++_2m",
    "dpm++_2m_karras",
    "heun",
    "heun_karras",
    "lms",
    "pndm",
    "unipc",
]
MAX_IMAGES = 10  # images per request, OpenAI's bound for ``n``
SIZE_MULTIPLE = 8  # the VAE works on 8x smaller latents; diffusers refuses other sizes
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")


class DiffusersOptions(BackendOptions):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device; auto: cuda when available")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="weights dtype; auto: float16 on cuda, float32 on cpu"
    )
    n_threads: int = Field(2, ge=1, description="torch CPU threads (set for the whole worker process)")
    sampler_name: SamplerName = Field(
        "euler_a", description="the sampler (Byzer-LLM's generation.sampler_name), a diffusers scheduler"
    )
    steps: int = Field(
        25, ge=1, le=500, description="denoising steps when a request gives none (Byzer-LLM's sampling_steps)"
    )
    guidance_scale: float = Field(
        7.5, ge=0, le=50, description="classifier-free guidance (CFG) scale when a request gives none"
    )
    width: int | None = Field(
        None,
        ge=8,
        multiple_of=8,
        description="default width in pixels, a multiple of 8 (default: the model's native size)",
    )
    height: int | None = Field(
        None,
        ge=8,
        multiple_of=8,
        description="default height in pixels, a multiple of 8 (default: the model's native size)",
    )
    max_size: int = Field(2048, ge=8, description="largest width or height a request may ask for, in pixels")


def _dtype_key() -> str:
    """``from_pretrained``'s dtype argument: ``dtype`` in diffusers releases that deprecate
    ``torch_dtype`` (they carry ``_resolve_dtype``), else ``torch_dtype``."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _scheduler(pipe: Any, sampler: str) -> Any:
    """The diffusers scheduler of ``sampler`` (a ``SAMPLERS`` name) from ``pipe``'s scheduler config."""
    import diffusers

    class_name, extra = SAMPLERS[sampler]
    return getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)


class DiffusersBackend(Backend):
    """Text to image on a diffusers pipeline folder (Stable Diffusion 1.x / 2.x, SDXL).

    Deploy options (``DiffusersOptions``): ``device`` (auto, cpu, cuda), ``dtype`` (auto: float16 on
    CUDA, float32 on CPU), ``n_threads`` (torch CPU threads, default 2), ``sampler_name`` (default
    ``euler_a``; one of ``SAMPLERS``), ``steps`` (default 25), ``guidance_scale`` (default 7.5),
    ``width`` / ``height`` (default the model's native size: its UNet's ``sample_size`` times the
    VAE scale factor, 512 for SD 1.5, 768 for SD 2.x, 1024 for SDXL), ``max_size`` (default 2048).

    ``generate_images`` draws ``request.n`` (1-10) PNG images of ``size`` ``"WxH"`` (multiples of 8)
    with ``steps``, ``guidance_scale``, ``negative_prompt`` and ``seed`` (None or -1: random; one seed
    gives the same images on the same machine). ``quality`` and ``style`` (DALL-E's) are ignored.

    Raises ``ModelPathError`` for a missing path or a folder without ``model_index.json``, and
    ``BackendError`` when torch or diffusers is not installed, the pipeline cannot be loaded, or
    CUDA is asked for and missing.
    """

    name = "diffusers"
    Options = DiffusersOptions
    tasks = ("image",)
    thread_safe = False

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        cfg = self.config
        self.path = resolve_model_path(model_path)
        folder = Path(self.path)
        index = folder / "model_index.json"
        if not index.is_file():
            raise ModelPathError(
                f"model_path {folder} has no model_index.json: the diffusers backend takes a diffusers pipeline "
                "folder (model_index.json with unet, vae, text_encoder... folders, as save_pretrained writes it)",
                param="model_path",
                path=str(folder),
            )
        try:
            import torch
            from diffusers import AutoPipelineForText2Image, DiffusionPipeline
            from diffusers.utils import logging as df_logging
        except ImportError as exc:
            raise BackendError(
                f"the diffusers backend needs torch, diffusers and pillow ({exc}): pip install 'byzerllm[image]'"
            ) from None

        df_logging.disable_progress_bar()
        torch.set_num_threads(int(cfg["n_threads"]))
        device = cfg["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise BackendError("infer_param device=cuda, but torch sees no CUDA device here; use device=cpu")
        dtype = cfg["dtype"] if cfg["dtype"] != "auto" else "float16" if device == "cuda" else "float32"
        self.device, self.dtype = device, dtype
        load: dict[str, Any] = {"local_files_only": True, _dtype_key(): getattr(torch, dtype)}
        try:
            components = json.loads(index.read_text())
        except ValueError as exc:
            raise ModelPathError(f"{index} is not JSON: {exc}", param="model_path", path=str(folder)) from None
        if "safety_checker" in components:  # SD 1.x: no checker (see the module docstring)
            load.update(safety_checker=None, requires_safety_checker=False)
        try:
            try:
                pipe = AutoPipelineForText2Image.from_pretrained(folder, **load)
            except ValueError:  # a pipeline class AutoPipeline has no text-to-image mapping for
                pipe = DiffusionPipeline.from_pretrained(folder, **load)
        except Exception as exc:  # diffusers reports bad folders as OSError/ValueError/KeyError...
            raise BackendError(f"diffusers could not load {folder}: {exc}") from None
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.base_scheduler = type(pipe.scheduler).__name__
        pipe.scheduler = _scheduler(pipe, cfg["sampler_name"])
        self.pipe = pipe
        scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
        sample = sample[0] if isinstance(sample, list | tuple) else sample
        native = int(sample) * scale if sample else 512
        self.native_size = native
        self.default_size = (int(cfg["width"] or native), int(cfg["height"] or native))
        self.model_name = folder.name
        self.pipeline_class = type(pipe).__name__

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        raise self._not_served("chat")

    def _size(self, size: str | None) -> tuple[int, int]:
        if size is None:
            return self.default_size
        limit = int(self.config["max_size"])
        accepted = (
            f'"WIDTHxHEIGHT" in pixels, each a multiple of {SIZE_MULTIPLE} from {SIZE_MULTIPLE} to {limit} '
            f"(this model's native size is {self.native_size}x{self.native_size})"
        )
        match = _SIZE.match(str(size))
        if not match:
            raise InvalidRequestError(f"size {size!r} is not a size; accepted: {accepted}", param="size")
        width, height = int(match.group(1)), int(match.group(2))
        for side in (width, height):
            if side % SIZE_MULTIPLE or not SIZE_MULTIPLE <= side <= limit:
                raise InvalidRequestError(f"size {size!r} is out of range; accepted: {accepted}", param="size")
        return width, height

    def generate_images(self, request: ImageRequest) -> ImageResponse:
        """``request.n`` PNG images (bytes) of ``request.prompt``, each ``size`` pixels.

        Raises ``InvalidRequestError`` naming ``prompt`` (empty), ``n`` (not 1-10), ``size`` (not
        ``"WxH"`` in multiples of 8 up to ``max_size``), ``steps`` (not 1-500), ``guidance_scale``
        (not 0-50) or ``seed`` (not an integer); ``BackendError`` when the pipeline fails.
        """
        import torch

        start = time.perf_counter()
        prompt = request.prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError("prompt is empty; describe the image to draw", param="prompt")
        n = request.n
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
            raise InvalidRequestError(f"n={n!r} is out of range; accepted: 1 to {MAX_IMAGES} images", param="n")
        width, height = self._size(request.size)
        steps = self._bounded(request.steps, "steps", int, self.config["steps"], 1, 500)
        guidance = self._bounded(request.guidance_scale, "guidance_scale", float, self.config["guidance_scale"], 0, 50)
        seed = request.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidRequestError(f"seed={seed!r} is not an integer; -1 or none: random", param="seed")
        if seed is None or seed < 0:
            seed = secrets.randbelow(2**63)
        # the generator lives on the device, so a seed draws the same noise as a CUDA run elsewhere
        generator = torch.Generator(device=self.device).manual_seed(int(seed) % 2**64)
        # an engine failure goes to the worker, which reports its type only (Worker._failure)
        with torch.inference_mode():
            out = self.pipe(
                prompt=prompt,
                negative_prompt=request.negative_prompt or None,
                num_inference_steps=steps,
                guidance_scale=guidance,
                width=width,
                height=height,
                num_images_per_prompt=n,
                generator=generator,
                output_type="pil",
            )
        images = []
        for image in out.images:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            images.append(buf.getvalue())
        return ImageResponse(images=images, time_cost=time.perf_counter() - start)

    @staticmethod
    def _bounded(value: Any, param: str, kind: type, default: Any, low: float, high: float) -> Any:
        if value is None:
            return kind(default)
        try:
            number = kind(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, bool) or not low <= number <= high:
            raise InvalidRequestError(f"{param}={value!r} is out of range; accepted: {low} to {high}", param=param)
        return number

    def meta(self) -> dict[str, Any]:
        width, height = self.default_size
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_name": self.model_name,
            "model_type": "image",
            "tasks": ["image"],
            "support_stream": False,
            "pipeline": self.pipeline_class,
            "default_size": f"{width}x{height}",
            "native_size": f"{self.native_size}x{self.native_size}",
            "max_size": int(self.config["max_size"]),
            "max_images": MAX_IMAGES,
            "sampler_name": self.config["sampler_name"],
            "scheduler": type(self.pipe.scheduler).__name__,
            "schedulers": {name: cls for name, (cls, _) in SAMPLERS.items()},
            "steps": int(self.config["steps"]),
            "guidance_scale": float(self.config["guidance_scale"]),
            "safety_checker": False,
            "device": self.device,
            "dtype": self.dtype,
        }

    def close(self) -> None:
        self.pipe = None
