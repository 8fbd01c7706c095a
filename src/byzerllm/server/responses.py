"""Response bodies of the OpenAI-compatible API: one set of models for ``byzerllm serve`` (where
FastAPI lists them in ``/openapi.json``) and for the serving classes of ``openai_serving``.

Shapes follow the OpenAI API reference (chat completions and their chunks, completions,
embeddings, models, the error body) and Jina's rerank API. Token counts are model tokens, times
are Unix seconds. Only pydantic is imported here, so ``openai_serving`` stays free of FastAPI.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from ..helpers import random_uuid
from .schemas import RerankDocument, ToolCallItem


def _now() -> int:
    return int(time.time())


class _Body(BaseModel):
    """A response body. Every field is sent, null included, except those named in
    ``_omit_when_none``, which are left out when None as OpenAI leaves them out (``tool_calls`` of
    a text answer, ``usage`` of a stream's middle chunks)."""

    _omit_when_none: ClassVar[frozenset[str]] = frozenset()

    # no return annotation: pydantic would take it for the serialized schema and drop the fields
    @model_serializer(mode="wrap")
    def _leave_out_nones(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        for name in self._omit_when_none:
            if name in data and data[name] is None:
                del data[name]
        return data


class ErrorInfo(BaseModel):
    message: str
    type: str = Field(description="the error class: invalid_request_error, not_found_error, rate_limit_error...")
    param: str | None = Field(description="the request's field at fault, as OpenAI writes it: messages.[0].content")
    code: str | None = Field(description="a finer reason where there is one: invalid_api_key, request_too_large")


class ErrorResponse(BaseModel):
    """OpenAI's error body, sent with every error status of the server."""

    error: ErrorInfo


class UsageInfo(BaseModel):
    """Tokens of a completion: the prompt's and the completion's."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class EmbeddingUsage(BaseModel):
    """Tokens of the texts embedded."""

    prompt_tokens: int
    total_tokens: int


Choice = TypeVar("Choice", bound=BaseModel)


class _Generated(_Body, Generic[Choice]):
    """What a completion and each chunk of its stream carry, in OpenAI's order: ``id``, the
    ``object`` kind, ``created`` (Unix seconds), the requested ``model``, ``choices``, ``usage``."""

    id: str
    object: str
    created: int = Field(default_factory=_now)
    model: str
    choices: list[Choice]
    usage: UsageInfo | None = None


class _Chunk(_Generated[Choice], Generic[Choice]):
    """A chunk of a stream: ``usage`` is left out but in the last chunks."""

    _omit_when_none = frozenset({"usage"})


class ChatMessage(_Body):
    """The answer: text in ``content``, or ``content`` null and the model's ``tool_calls``."""

    _omit_when_none = frozenset({"tool_calls", "reasoning_content"})

    role: str
    content: str | None
    tool_calls: list[ToolCallItem] | None = None
    reasoning_content: str | None = Field(default=None, description="a reasoning model's thinking (DeepSeek's field)")


class ChatCompletionResponseChoice(_Body):
    index: int
    message: ChatMessage
    finish_reason: str | None = Field(default=None, description="stop, length or tool_calls")
    logprobs: None = None


class ChatCompletionResponse(_Generated[ChatCompletionResponseChoice]):
    id: str = Field(default_factory=lambda: f"chatcmpl-{random_uuid()}")
    object: Literal["chat.completion"] = "chat.completion"
    usage: UsageInfo


class FunctionCallDelta(_Body):
    """The function's ``name`` (in the first delta of a call), then ``arguments`` JSON in pieces."""

    _omit_when_none = frozenset({"name"})

    name: str | None = None
    arguments: str = ""


class ToolCallDelta(_Body):
    """A piece of a tool call in a stream; ``id`` and ``type`` come with its first piece."""

    _omit_when_none = frozenset({"id", "type"})

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class DeltaMessage(_Body):
    _omit_when_none = frozenset({"role", "content", "reasoning_content", "tool_calls"})

    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatCompletionResponseStreamChoice(_Body):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None


class ChatCompletionStreamResponse(_Chunk[ChatCompletionResponseStreamChoice]):
    """One chunk of a chat completion stream (an SSE event ``data: <chunk>``); the last chunk with
    a ``finish_reason`` carries ``usage``, and with ``stream_options.include_usage`` one more chunk
    with empty ``choices`` does too."""

    id: str = Field(default_factory=lambda: f"chatcmpl-{random_uuid()}")
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"


class CompletionResponseChoice(_Body):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class CompletionResponse(_Generated[CompletionResponseChoice]):
    id: str = Field(default_factory=lambda: f"cmpl-{random_uuid()}")
    object: Literal["text_completion"] = "text_completion"
    usage: UsageInfo


# a completion chunk's choice has the shape of the whole response's
CompletionResponseStreamChoice = CompletionResponseChoice


class CompletionStreamResponse(_Chunk[CompletionResponseStreamChoice]):
    """One chunk of a completion stream; ``usage`` as in ``ChatCompletionStreamResponse``."""

    id: str = Field(default_factory=lambda: f"cmpl-{random_uuid()}")
    object: Literal["text_completion"] = "text_completion"


class EmbeddingResponseData(_Body):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(
        description="the vector, or with encoding_format base64 its little-endian float32 bytes in base64"
    )


class EmbeddingResponse(_Body):
    object: Literal["list"] = "list"
    data: list[EmbeddingResponseData]
    model: str
    usage: EmbeddingUsage


class ModelCard(_Body):
    """A served model: a deployment (or an alias of one), with its ``kind`` and ``state``."""

    _omit_when_none = frozenset({"kind", "state"})

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "byzerllm"
    kind: str | None = Field(default=None, description="chat, embedding, speech, transcription or image")
    state: str | None = Field(default=None, description="the deployment's state")


class ModelList(_Body):
    object: Literal["list"] = "list"
    data: Sequence[ModelCard] = Field(default_factory=list)


class RerankResult(_Body):
    _omit_when_none = frozenset({"document"})

    index: int = Field(description="the document's position in the request")
    relevance_score: float
    document: RerankDocument | None = Field(default=None, description="sent with return_documents")


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(_Body):
    """The ``top_n`` documents, most relevant first (Jina's shape)."""

    model: str
    results: list[RerankResult]
    usage: RerankUsage


class TranscriptionResponse(_Body):
    """``response_format="json"``."""

    text: str


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionWord(BaseModel):
    word: str
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")


class VerboseTranscriptionResponse(_Body):
    """``response_format="verbose_json"``: ``segments`` and ``words`` as ``timestamp_granularities``
    asks (left out otherwise)."""

    _omit_when_none = frozenset({"segments", "words"})

    task: str
    language: str = Field(description="the language's English name, e.g. english")
    duration: float = Field(description="seconds")
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None


class ImageData(_Body):
    _omit_when_none = frozenset({"b64_json", "url", "revised_prompt"})

    b64_json: str | None = Field(default=None, description="the PNG in base64 (response_format b64_json)")
    url: str | None = Field(default=None, description="a data: URL of the PNG (response_format url)")
    revised_prompt: str | None = None


class ImagesResponse(_Body):
    created: int
    data: list[ImageData]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


__all__ = [
    "ChatCompletionResponse",
    "ChatCompletionResponseChoice",
    "ChatCompletionResponseStreamChoice",
    "ChatCompletionStreamResponse",
    "ChatMessage",
    "CompletionResponse",
    "CompletionResponseChoice",
    "CompletionResponseStreamChoice",
    "CompletionStreamResponse",
    "DeltaMessage",
    "EmbeddingResponse",
    "EmbeddingResponseData",
    "EmbeddingUsage",
    "ErrorInfo",
    "ErrorResponse",
    "FunctionCallDelta",
    "HealthResponse",
    "ImageData",
    "ImagesResponse",
    "ModelCard",
    "ModelList",
    "RerankResponse",
    "RerankResult",
    "RerankUsage",
    "ToolCallDelta",
    "TranscriptionResponse",
    "TranscriptionSegment",
    "TranscriptionWord",
    "UsageInfo",
    "VerboseTranscriptionResponse",
]
