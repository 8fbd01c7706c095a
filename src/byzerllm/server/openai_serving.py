"""OpenAI chat and completion serving over any client object: Byzer-LLM's ``OpenAIServingChat`` /
``OpenAIServingCompletion`` and their request and response models.

Byzer-LLM's users build their own OpenAI-compatible servers with these classes around an object
that has the client API (``async_stream_chat_oai``, ``chat_oai``...), e.g. auto-coder's document
Q&A server around its retrieval pipeline. ``byzerllm serve`` is this package's own server; these
classes serve one client object, with Byzer-LLM's shapes (lenient models: unknown fields are
ignored). The response models are the server's own (``responses``), re-exported here, with
Byzer-LLM's extra fields where its shapes have them (``ModelCard``, ``EmbeddingResponse``) and its
flat ``ErrorResponse`` (vLLM's former shape, not the server's ``{"error": {...}}``). Wire formats
follow the OpenAI API reference (chat completions, completions, models, embeddings), with
``reasoning_content`` in messages and deltas as DeepSeek sends it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import ByzerLLMError
from ..helpers import random_uuid
from ..types import LLMResponse, SingleOutputMeta
from . import responses
from .responses import (
    ChatCompletionResponse,
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse,
    ChatMessage,
    CompletionResponse,
    CompletionResponseChoice,
    CompletionResponseStreamChoice,
    CompletionStreamResponse,
    DeltaMessage,
    UsageInfo,
)
from .responses import EmbeddingResponseData as EmbeddingResponseData  # re-exported for Byzer-LLM's path


class ErrorResponse(BaseModel):
    object: str = "error"
    message: str
    type: str
    param: str | None = None
    code: int


class ModelPermission(BaseModel):
    id: str = Field(default_factory=lambda: f"modelperm-{random_uuid()}")
    object: str = "model_permission"
    created: int = Field(default_factory=lambda: int(time.time()))
    allow_create_engine: bool = False
    allow_sampling: bool = True
    allow_logprobs: bool = True
    allow_search_indices: bool = False
    allow_view: bool = True
    allow_fine_tuning: bool = False
    organization: str = "*"
    group: str | None = None
    is_blocking: bool = False


class ModelCard(responses.ModelCard):
    """The server's model card with Byzer-LLM's ``root``, ``parent`` and ``permission``."""

    root: str | None = None
    parent: str | None = None
    permission: list[ModelPermission] = Field(default_factory=list)


class ModelList(responses.ModelList):
    data: list[ModelCard] = Field(default_factory=list)


class StreamOptions(BaseModel):
    include_usage: bool | None = True
    continuous_usage_stats: bool | None = False


class _Sampling(BaseModel):
    """The sampling fields both requests share; ``to_llm_config`` gives the ones the caller set."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool | None = None
    echo: bool | None = False
    user: str | None = None
    extra_body: dict[str, Any] | None = None
    prompt_template: str | None = None
    request_id: str | None = None

    def to_llm_config(self) -> dict[str, Any]:
        """The client's ``llm_config`` for the fields set (OpenAI's ``max_tokens`` is ``max_length``)."""
        names = {"max_tokens": "max_length"}
        keys = (
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "top_k",
            "min_p",
            "repetition_penalty",
            "ignore_eos",
        )
        return {names.get(k, k): getattr(self, k) for k in keys if getattr(self, k) not in (None, [])}


class ChatCompletionRequest(_Sampling):
    messages: list[dict[str, Any]]
    add_generation_prompt: bool = True
    continue_final_message: bool = False

    def to_llm_config(self) -> dict[str, Any]:
        config = super().to_llm_config()
        if self.continue_final_message or not self.add_generation_prompt:
            config["continue_final_message"] = True
        return config


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class EmbeddingCompletionRequest(BaseModel):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class EmbeddingResponse(responses.EmbeddingResponse):
    """The server's embedding response with Byzer-LLM's ``id``, ``created`` and ``usage``."""

    id: str = Field(default_factory=lambda: f"embd-{random_uuid()}")
    created: int = Field(default_factory=lambda: int(time.time()))
    usage: UsageInfo  # type: ignore[assignment]  # Byzer-LLM's has completion_tokens (0) too


def _usage(input_tokens: int, generated_tokens: int) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=input_tokens, completion_tokens=generated_tokens, total_tokens=input_tokens + generated_tokens
    )


def _sse(chunk: BaseModel) -> str:
    return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"


class OpenAIServing:
    """What both servings share: the client, the served model name, error bodies.

    ``llm_client``: any object with the client API; ``server_model_name``: the deployment every
    request goes to (else the request's ``model``); ``prompt_template``: a ``Templates`` name
    (``qwen``, ``llama``...) set with ``setup_template`` for that model.
    """

    def __init__(
        self, llm_client: Any, server_model_name: str | None = None, prompt_template: str | None = None
    ) -> None:
        self.llm_client = llm_client
        self.server_model_name = server_model_name
        if server_model_name and prompt_template:
            llm_client.setup_template(server_model_name, self._detect_prompt_template(prompt_template))

    def _detect_prompt_template(self, name: str) -> Any:
        from ..client.templates import Templates

        if name == "auto":
            return "auto"
        template = getattr(Templates, name, None)
        if template is None or name.startswith("_"):
            raise ByzerLLMError(f"prompt_template {name!r} is unknown; accepted: auto or a Templates name")
        return template()

    def _model(self, body: _Sampling) -> str:
        return self.server_model_name or body.model

    async def show_available_models(self) -> ModelList:
        """The served model (one card), as Byzer-LLM's serving lists it."""
        return ModelList(
            data=[
                ModelCard(
                    id=self.server_model_name or "", root=self.server_model_name or "", permission=[ModelPermission()]
                )
            ]
        )

    def create_error_response(
        self, message: str, err_type: str = "BadRequestError", status_code: HTTPStatus = HTTPStatus.BAD_REQUEST
    ) -> ErrorResponse:
        return ErrorResponse(message=message, type=err_type, code=int(status_code))

    def create_streaming_error_response(
        self, message: str, err_type: str = "BadRequestError", status_code: HTTPStatus = HTTPStatus.BAD_REQUEST
    ) -> str:
        error = self.create_error_response(message, err_type, status_code)
        return '{"error": ' + error.model_dump_json() + "}"

    async def _check_model(self, body: _Sampling) -> ErrorResponse | None:
        """None when the request's model can be served, else a 404 error body."""
        if self.server_model_name or await asyncio.to_thread(self.llm_client.is_model_exist, body.model):
            return None
        return self.create_error_response(
            f"The model `{body.model}` does not exist.", "NotFoundError", HTTPStatus.NOT_FOUND
        )

    def _prepare(self, body: _Sampling) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(request id, llm_config, extra keyword arguments)`` of a request."""
        if body.prompt_template:
            self.llm_client.setup_template(body.model, self._detect_prompt_template(body.prompt_template))
        request_id = body.request_id or f"cmpl-{random_uuid()}"
        extra = {"extra_request_params": body.extra_body} if body.extra_body else {}
        return request_id, {"gen.request_id": request_id, **body.to_llm_config()}, extra


class OpenAIServingChat(OpenAIServing):
    """``create_chat_completion(body, request)``: a ``ChatCompletionResponse``, an async iterator of
    SSE lines (``data: {...}`` chunks, then ``data: [DONE]``) when ``body.stream``, or an
    ``ErrorResponse``. ``response_role`` is the role of the answer (``assistant``)."""

    def __init__(
        self,
        llm_client: Any,
        response_role: str = "assistant",
        server_model_name: str | None = None,
        prompt_template: str | None = None,
    ) -> None:
        super().__init__(llm_client, server_model_name, prompt_template)
        self.response_role = response_role

    def get_chat_request_role(self, body: ChatCompletionRequest) -> str:
        return self.response_role if body.add_generation_prompt else body.messages[-1]["role"]

    async def create_chat_completion(
        self, body: ChatCompletionRequest, request: Any = None
    ) -> ErrorResponse | AsyncIterator[str] | ChatCompletionResponse:
        error = await self._check_model(body)
        if error is not None:
            return error
        request_id, config, extra = self._prepare(body)
        try:
            if body.stream:
                return self.chat_completion_stream_generator(body, request_id, config, extra)
            return await self.chat_completion_full_generator(body, request, request_id, config, extra)
        except (ByzerLLMError, ValueError) as exc:
            return self.create_error_response(str(exc))

    def _echo(self, body: ChatCompletionRequest, role: str) -> str:
        last = body.messages[-1] if body.messages else {}
        return last.get("content") or "" if body.echo and last.get("role") == role else ""

    async def chat_completion_stream_generator(
        self,
        body: ChatCompletionRequest,
        request_id: str,
        config: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        if config is None:
            request_id, config, extra = self._prepare(body)
        model, role = self._model(body), self.get_chat_request_role(body)

        def chunk(delta: DeltaMessage, finish: str | None = None, usage: UsageInfo | None = None) -> str:
            choice = ChatCompletionResponseStreamChoice(index=0, delta=delta, finish_reason=finish)
            return _sse(ChatCompletionStreamResponse(id=request_id, model=model, choices=[choice], usage=usage))

        if echoed := self._echo(body, role):
            yield chunk(DeltaMessage(role=role, content=echoed))
        meta = SingleOutputMeta()
        async for text, meta in self.llm_client.async_stream_chat_oai(
            conversations=body.messages, model=model, delta_mode=True, llm_config=config, **(extra or {})
        ):
            if text or meta.reasoning_content:
                yield chunk(DeltaMessage(role=role, content=text, reasoning_content=meta.reasoning_content or None))
        usage = _usage(meta.input_tokens_count, meta.generated_tokens_count)
        yield chunk(DeltaMessage(role=role, content=""), meta.finish_reason or "stop", usage)
        yield "data: [DONE]\n\n"

    async def chat_completion_full_generator(
        self,
        body: ChatCompletionRequest,
        request: Any,
        request_id: str,
        config: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ErrorResponse | ChatCompletionResponse:
        if config is None:
            request_id, config, extra = self._prepare(body)
        model, role = self._model(body), self.get_chat_request_role(body)
        call = asyncio.ensure_future(
            asyncio.to_thread(
                self.llm_client.chat_oai, conversations=body.messages, model=model, llm_config=config, **(extra or {})
            )
        )
        while not call.done():
            await asyncio.wait([call], timeout=0.5)
            if not call.done() and request is not None and await request.is_disconnected():
                await asyncio.to_thread(self.llm_client.abort, request_id, model)
                return self.create_error_response("Client disconnected")
        [resp] = call.result()
        message = ChatMessage(
            role=role,
            content=self._echo(body, role) + resp.output,
            reasoning_content=resp.metadata.get("reasoning_content") or None,
        )
        return ChatCompletionResponse(
            id=request_id,
            model=model,
            usage=_response_usage(resp),
            choices=[
                ChatCompletionResponseChoice(index=0, message=message, finish_reason=resp.metadata.get("finish_reason"))
            ],
        )


class OpenAIServingCompletion(OpenAIServing):
    """``create_completion(body, request)``: the prompt is sent as one user message (as Byzer-LLM
    does); a ``CompletionResponse``, an async iterator of SSE lines, or an ``ErrorResponse``."""

    async def create_completion(
        self, body: CompletionRequest, request: Any = None
    ) -> ErrorResponse | AsyncIterator[str] | CompletionResponse:
        error = await self._check_model(body)
        if error is not None:
            return error
        if not isinstance(body.prompt, str) and len(body.prompt) != 1:
            return self.create_error_response("prompt must be one string")
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
        request_id, config, extra = self._prepare(body)
        messages = [{"role": "user", "content": prompt}]
        model = self._model(body)
        if body.stream:
            return self._stream(messages, model, request_id, config, extra, prompt if body.echo else "")
        try:
            [resp] = await asyncio.to_thread(
                self.llm_client.chat_oai, conversations=messages, model=model, llm_config=config, **extra
            )
        except (ByzerLLMError, ValueError) as exc:
            return self.create_error_response(str(exc))
        text = (prompt if body.echo else "") + resp.output
        return CompletionResponse(
            id=request_id,
            model=model,
            usage=_response_usage(resp),
            choices=[CompletionResponseChoice(index=0, text=text, finish_reason=resp.metadata.get("finish_reason"))],
        )

    async def _stream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        request_id: str,
        config: dict[str, Any],
        extra: dict[str, Any],
        echoed: str,
    ) -> AsyncIterator[str]:
        def chunk(text: str, finish: str | None = None, usage: UsageInfo | None = None) -> str:
            choice = CompletionResponseStreamChoice(index=0, text=text, finish_reason=finish)
            return _sse(CompletionStreamResponse(id=request_id, model=model, choices=[choice], usage=usage))

        if echoed:
            yield chunk(echoed)
        meta = SingleOutputMeta()
        async for text, meta in self.llm_client.async_stream_chat_oai(
            conversations=messages, model=model, delta_mode=True, llm_config=config, **extra
        ):
            if text:
                yield chunk(text)
        yield chunk("", meta.finish_reason or "stop", _usage(meta.input_tokens_count, meta.generated_tokens_count))
        yield "data: [DONE]\n\n"


def _response_usage(resp: LLMResponse) -> UsageInfo:
    return _usage(resp.metadata.get("input_tokens_count", 0), resp.metadata.get("generated_tokens_count", 0))
