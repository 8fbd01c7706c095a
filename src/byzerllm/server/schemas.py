"""Request bodies of the OpenAI-compatible API (the subset byzerllm serves).

Unknown fields are refused with a 400 that names them, as OpenAI's API does, and values are not
coerced (``"max_tokens": "8"`` is refused, as OpenAI refuses it); the limits OpenAI's API reference
states are checked here too (at most 4 stop sequences, tool names ``^[a-zA-Z0-9_-]{1,64}$``,
``tool_choice`` only with tools, ``stream_options`` only with ``stream``, a valid JSON schema in
``response_format``). Known fields whose value the deployments cannot honour (``n > 1``,
``logprobs``) are refused by the endpoints.
Shapes follow the OpenAI API reference (chat completions, completions, embeddings) and the
Jina / Cohere rerank APIs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Strict(BaseModel):
    # strict: a JSON string is not taken for a number or a boolean
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCallItem(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = None
    tool_call_id: str | None = None
    # DeepSeek's chat prefix completion: the last (assistant) message is continued
    prefix: bool | None = None


class FunctionDef(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Strict):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class ToolChoiceFunction(_Strict):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(_Strict):
    name: str = "output"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "the schema"
            raise ValueError(f"not a valid JSON schema at {where}: {exc.message}") from None
        return schema


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logprobs: bool | int | None = None
    user: str | None = None
    # extensions of llama.cpp's and vLLM's servers
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    ignore_eos: bool | None = None

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # vLLM's extensions for continuing the last assistant message (response prefix)
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    top_logprobs: int | None = None

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_needs_tools(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, "none") and not info.data.get("tools"):
            raise ValueError("tool_choice is only allowed when tools are given")
        return value

    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class RerankDocument(_Strict):
    text: str


class RerankRequest(_Strict):
    model: str = Field(min_length=1)
    query: str
    documents: list[str | RerankDocument] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = True


class SpeechBody(_Strict):
    """OpenAI's ``/v1/audio/speech`` body (``instructions`` is for gpt-4o-mini-tts and not used by
    local voices)."""

    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=4096)
    voice: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: Literal["audio"] | None = None


class ImageGenerationRequest(_Strict):
    """OpenAI's ``/v1/images/generations`` body, with Stable Diffusion's ``negative_prompt``,
    ``steps``, ``guidance_scale`` and ``seed`` as extensions."""

    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = None
    negative_prompt: str | None = None
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance_scale: float | None = Field(default=None, ge=0)
    seed: int | None = None
