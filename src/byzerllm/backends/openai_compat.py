"""SaaS and self-hosted models behind an OpenAI-compatible API (``saas/openai`` and its presets).

Any server that speaks OpenAI's chat-completions API: OpenAI itself, Azure OpenAI, DeepSeek,
Moonshot, SiliconFlow, DashScope's compatible mode, Zhipu, Ollama, vLLM and llama.cpp servers.
The named types (``saas/deepseek``...) are presets over this backend, kept as data in
``saas_presets.json``. Requests go through the official ``openai`` client with its own retries
off; retries, fallback models and the total deadline are ``saas_retry``'s.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import InvalidRequestError, UpstreamError
from ..types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ImageRequest,
    ImageResponse,
    SpeechRequest,
    SpeechResponse,
    Transcription,
    TranscriptionRequest,
)
from . import saas_retry
from .base import Backend, Cancelled, _never, check_input_length, estimated_tokens
from .options import BackendOptions
from .saas_presets import preset_options
from .saas_retry import RETRYABLE_STATUS, Attempts, Failure, RetryPolicy, Target


# deploy options of every SaaS backend (saas.* infer_params)
class SaaSOptions(BackendOptions):
    """Options of every SaaS backend."""

    preset: str | None = Field(None, description="a saas_presets.json entry the other options start from")
    model: str | None = Field(None, description="the provider's model id (required)")
    api_key: str | None = Field(None, description="the API key")
    api_key_env: str | None = Field(None, description="an environment variable to read the API key from")
    base_url: str | None = Field(None, description="the API root (default: the provider's)")
    api_base: str | None = Field(None, description="base_url as the Byzer-LLM documents spell it")
    timeout: float = Field(60.0, gt=0, description="seconds per attempt")
    max_retries: int = Field(2, ge=0, description="retries per model on a retryable failure")
    deadline: float = Field(300.0, gt=0, description="seconds for the whole request, retries included")
    backoff: float = Field(0.5, ge=0, description="seconds before the first retry, doubled each time")
    max_backoff: float = Field(8.0, ge=0, description="the longest pause between retries, seconds")
    fallback_models: list[str | dict[str, Any]] | None = Field(
        None, description='model ids on the same provider, or option objects {"model", "base_url", "api_key"}'
    )
    https_verify: bool = Field(True, description="verify TLS certificates")
    proxies: str | None = Field(None, description="a proxy URL")
    local_address: str | None = Field(None, description="the local IP address to connect from")
    max_output_tokens: int | None = Field(None, ge=1, description="a cap on a request's max_tokens")
    extra_headers: dict[str, str] | None = Field(None, description="HTTP headers sent with every request")

    @field_validator("fallback_models", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # the command line gives a comma-separated list as well as JSON
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


def http_module():
    """The httpx flavour the installed SDKs are built on (``httpx2`` for openai 3, else ``httpx``)."""
    try:
        import httpx2

        return httpx2
    except ImportError:  # older SDKs
        import httpx

        return httpx


def httpx_errors(name: str) -> tuple[type[BaseException], ...]:
    """Exception class ``name`` (``TransportError``, ``TimeoutException``) of both httpx flavours:
    the SDKs raise them unwrapped while a stream is read."""
    import httpx

    errors: list[type[BaseException]] = [getattr(httpx, name)]
    try:
        import httpx2

        errors.append(getattr(httpx2, name))
    except ImportError:
        pass
    return tuple(errors)


# where OpenAI-compatible servers put a reasoning model's thinking, in the order they are read
REASONING_FIELDS = ("reasoning_content", "reasoning")


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class SaaSBackend(Backend):
    """Shared by the SaaS backends: options with a preset under them, the API key (given or
    from ``api_key_env``), the HTTP client settings and the retry policy."""

    thread_safe = True

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        preset = options.get("preset")
        super().__init__(model_path, {**preset_options(preset), **options})
        cfg = self.config
        self.provider = preset or self.name
        if cfg["api_base"] and not cfg["base_url"]:  # the Byzer-LLM documents' spelling
            cfg["base_url"] = cfg["api_base"]
        if not cfg["api_key"] and cfg["api_key_env"]:
            cfg["api_key"] = os.environ.get(cfg["api_key_env"])
        self.policy = RetryPolicy.from_options(cfg)
        self.fallbacks = [f.strip() if isinstance(f, str) else f for f in cfg["fallback_models"] or []]

    def http_client(self, cfg: dict[str, Any]) -> Any:
        """An HTTP client honouring ``https_verify``, ``proxies`` and ``local_address``."""
        http = http_module()
        transport = http.HTTPTransport(local_address=cfg["local_address"]) if cfg["local_address"] else None
        return http.Client(
            verify=cfg["https_verify"], proxy=cfg["proxies"], transport=transport, timeout=float(cfg["timeout"])
        )

    def targets(self) -> list[Target]:
        """The primary model, then each fallback, each with its client."""
        out = [Target(self.model, self.client)]
        for fb in self.fallbacks:
            if isinstance(fb, str):
                out.append(Target(fb, self.client))
            else:
                if "model" not in fb:
                    raise InvalidRequestError(
                        "each object of saas.fallback_models needs a model", param="saas.fallback_models"
                    )
                out.append(Target(fb["model"], self.make_client({**self.config, **fb})))
        return out

    def attempts(self) -> Attempts:
        return Attempts(self.policy, self._targets, self.classify)

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        """``_open`` under the retry policy: retried (or passed to a fallback) only until the first
        text or reasoning arrives; the last chunk's details carry the number of attempts."""
        check_input_length(request, estimated_tokens(request), estimated=True)
        attempts = self.attempts()
        for chunk, _ in saas_retry.stream(
            attempts,
            lambda t, timeout: self._open(request, t, timeout, cancelled),
            started=lambda c: bool(c.delta or c.reasoning),
        ):
            if chunk.details is not None:
                chunk.details["attempts"] = attempts.count
            yield chunk

    def _open(self, request: ChatRequest, target: Target, timeout: float, cancelled: Cancelled) -> Iterator[ChatChunk]:
        """One streamed attempt against ``target``."""
        raise NotImplementedError

    def make_client(self, cfg: dict[str, Any]) -> Any:
        raise NotImplementedError

    def classify(self, exc: BaseException, target: Target) -> Failure | None:
        raise NotImplementedError

    def sdk_failure(
        self, exc: BaseException, target: Target, sdk: Any, status_error: Callable[[Any], UpstreamError]
    ) -> Failure | None:
        """The errors of an SDK built like openai's and anthropic's (``APIStatusError``,
        ``APITimeoutError``, ``APIConnectionError``, ``APIResponseValidationError``), mapped to the
        retry loop's view; ``status_error`` reads the provider's status error. Others go to
        ``connection_failure``."""
        if isinstance(exc, sdk.APIStatusError):
            error = status_error(exc)
            wait = saas_retry.retry_after(exc.response.headers)
            if wait is not None:
                error.details["retry_after"] = error.retry_after = wait
            return Failure(error, exc.status_code in RETRYABLE_STATUS, wait)
        where = f"{self.provider} ({target.label})"
        for kind, status, message in (  # a timeout is also a connection error: it comes first
            (
                sdk.APITimeoutError,
                504,
                f"{where} did not answer within the attempt's timeout "
                f"({self.policy.timeout:g}s, or the deadline's rest)",
            ),
            (sdk.APIConnectionError, 502, f"connection to {where} failed: {exc.__cause__ or exc}"),
            (sdk.APIResponseValidationError, 502, f"{where} sent a malformed response: {exc}"),
        ):
            if isinstance(exc, kind):
                return Failure(UpstreamError(message, status=status, provider=self.provider, model=target.label), True)
        return self.connection_failure(exc, target)

    def connection_failure(self, exc: BaseException, target: Target) -> Failure | None:
        """Timeouts, connection errors and malformed bodies, whatever the SDK."""
        if isinstance(exc, UpstreamError):
            return Failure(exc, exc.details.get("status") in RETRYABLE_STATUS)
        where = f"{self.provider} ({target.label})"
        if isinstance(exc, httpx_errors("TimeoutException")):
            return Failure(
                UpstreamError(
                    f"{where} did not answer within {self.policy.timeout:g}s",
                    status=504,
                    provider=self.provider,
                    model=target.label,
                ),
                True,
            )
        if isinstance(exc, httpx_errors("TransportError")):
            return Failure(
                UpstreamError(
                    f"connection to {where} failed: {exc!r}", status=502, provider=self.provider, model=target.label
                ),
                True,
            )
        if isinstance(exc, json.JSONDecodeError):
            return Failure(
                UpstreamError(
                    f"{where} sent malformed JSON: {exc}", status=502, provider=self.provider, model=target.label
                ),
                True,
            )
        return None


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """``(event, data)`` of each server-sent event in ``lines`` (the WHATWG HTML "server-sent events"
    format: ``field: value`` lines, a blank line ends an event, its data lines are joined with
    newlines, lines starting with ``:`` are comments)."""
    event, data = None, []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield event, "\n".join(data)


def _without_none(value: Any) -> Any:
    """A JSON value without its null members, at every depth (as the SDK's ``exclude_none`` dump)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _stream_error(chunk: Any, provider: str, model: str) -> UpstreamError:
    """The error a provider sent inside a stream (an ``error`` event or member), as ``UpstreamError``
    (502: the stream broke; retried only while nothing was delivered)."""
    error = chunk.get("error") if isinstance(chunk, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return UpstreamError(
        f"{provider} ({model}) broke off the stream: {message or chunk}", status=502, provider=provider, model=model
    )


class OpenAIOptions(SaaSOptions):
    json_schema_mode: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="how a JSON schema is sent: OpenAI's json_schema, json_object with a schema "
        "(llama-cpp-python's server), or none (asked for in the prompt)",
    )
    native_tools: bool = Field(True, description="the server calls tools itself (false: tools through the prompt)")
    is_reasoning: bool = Field(False, description="a reasoning model: temperature, top_p and max_tokens are not sent")
    reasoning_fields: list[str] | None = Field(
        None, description="message fields holding the thinking (default: reasoning_content, then reasoning)"
    )
    prefix_mode: Literal["auto", "deepseek", "siliconflow", "vllm"] = Field(
        "auto", description="how an assistant message to continue is sent (auto: by the base URL)"
    )
    stream_options: bool = Field(True, description="ask for usage in streams")
    usage_in_choice: bool = Field(False, description="a stream's usage is in its last choice (Moonshot)")
    api_type: Literal["openai", "azure"] | None = Field(None, description="azure for Azure OpenAI")
    api_version: str | None = Field(None, description="Azure OpenAI's API version")
    deployment: str | None = Field(None, description="the Azure deployment (default: model)")
    deployment_id: str | None = Field(None, description="deployment as older Azure code spells it")
    task: Literal["auto", "chat", "speech", "transcription", "image"] = Field(
        "auto",
        description="what the model does (auto: by its name: tts-* speech, whisper-* and *-transcribe "
        "transcription, dall-e-* and gpt-image-* image, else chat)",
    )

    @field_validator("reasoning_fields", mode="before")
    @classmethod
    def _fields_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class OpenAICompatBackend(SaaSBackend):
    """Deploy options (``infer_params``, ``saas.`` prefix optional):

    - ``preset``: a ``saas_presets.json`` entry the other options start from (set by the
      ``saas/<name>`` types);
    - ``model`` (required), ``api_key`` (or ``api_key_env``, an environment variable to read it
      from), ``base_url`` (alias ``api_base``), ``extra_headers`` (a dict);
    - ``timeout`` (seconds per attempt, 60), ``max_retries`` (per model, 2), ``deadline`` (seconds
      for the whole request, 300), ``backoff`` / ``max_backoff`` (seconds, 0.5 / 8),
      ``fallback_models`` (model ids on the same provider, or option objects such as
      ``{"model", "base_url", "api_key"}``), see ``saas_retry``;
    - ``https_verify`` (false disables TLS verification), ``proxies`` (a proxy URL),
      ``local_address`` (the local IP to connect from), ``max_output_tokens`` (a cap on max_tokens);
    - ``json_schema_mode`` (``json_schema``, OpenAI's shape; ``json_object`` sends
      ``{"type": "json_object", "schema": ...}`` as llama-cpp-python's server expects; ``none``: the
      provider takes no schema, typed outputs are asked for in the prompt), ``native_tools`` (false
      for servers without tool calling);
    - reasoning models: ``is_reasoning`` (as in Byzer-LLM: temperature, top_p and max_tokens are not
      sent, since reasoning models such as o1 and DeepSeek-R1 refuse or ignore them);
      ``reasoning_fields`` (delta/message fields holding the thinking; default: the first of
      ``reasoning_content`` (DeepSeek, vLLM, SiliconFlow) and ``reasoning`` (Ollama) that is set);
    - ``prefix_mode``: how a request whose last message is an assistant message to continue
      (``llm_config`` ``response_prefix`` / ``continue_final_message``) is sent: ``deepseek``
      (``"prefix": true`` on that message), ``siliconflow`` (``extra_body.prefix``), ``vllm``
      (``continue_final_message`` and ``add_generation_prompt: false`` in the body, which vLLM and
      ``byzerllm serve`` read), ``auto`` (the default: by the base URL, as Byzer-LLM does);
    - translation: ``stream_options`` (ask for usage in streams), ``usage_in_choice`` (Moonshot
      puts a stream's usage in its last choice);
    - Azure: ``api_type`` ``azure``, ``api_version``, ``deployment`` (alias ``deployment_id``);
      ``base_url`` is the resource endpoint;
    - ``task``: chat (with embeddings and rerank), speech (``/audio/speech``), transcription
      (``/audio/transcriptions``, verbose JSON with word and segment times) or image
      (``/images/generations``, base64 PNG); ``auto`` decides by the model's name.

    Raises ``UpstreamError`` carrying the provider's status, request id, message and the number
    of attempts.
    """

    name = "openai"
    Options = OpenAIOptions
    tasks = ("chat", "embed", "rerank")
    supports_tool_calls = True
    request_options = frozenset(
        {"presence_penalty", "frequency_penalty", "top_k", "min_p", "repetition_penalty", "ignore_eos"}
    )

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        cfg = self.config
        self.azure = cfg["api_type"] == "azure"
        if self.azure:
            cfg["deployment"] = cfg["deployment"] or cfg["deployment_id"] or cfg["model"]
            for key in ("base_url", "api_version", "deployment"):
                if not cfg[key]:
                    raise InvalidRequestError(f"saas.{key} is required for Azure OpenAI", param=f"saas.{key}")
        elif not cfg["base_url"]:
            cfg["base_url"] = "https://api.openai.com/v1"
        self.model = cfg["model"] or cfg["deployment"] or model_path
        if not self.model:
            raise InvalidRequestError("saas.model is required (the provider's model id)", param="saas.model")
        self.reasoning_fields = cfg["reasoning_fields"] or list(REASONING_FIELDS)
        self.prefix_mode = cfg["prefix_mode"]
        if self.prefix_mode == "auto":
            base = str(cfg["base_url"] or "")
            self.prefix_mode = next((m for m in ("deepseek", "siliconflow") if m in base), "vllm")
        self.is_reasoning = cfg["is_reasoning"]
        self.client = self.make_client(cfg)
        self._targets = self.targets()

    def make_client(self, cfg: dict[str, Any]) -> Any:
        import openai

        common = {
            "api_key": cfg.get("api_key") or "none",
            "max_retries": 0,
            "timeout": float(cfg["timeout"]),
            "default_headers": cfg.get("extra_headers") or None,
            "http_client": self.http_client(cfg),
        }
        if cfg.get("api_type") == "azure":
            return openai.AzureOpenAI(
                azure_endpoint=cfg["base_url"],
                api_version=cfg["api_version"],
                azure_deployment=cfg.get("deployment") or cfg.get("model"),
                **common,
            )
        return openai.OpenAI(base_url=cfg["base_url"], **common)

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        cap = self.config["max_output_tokens"]
        max_tokens = min(x for x in (request.max_tokens, cap) if x) if (request.max_tokens or cap) else None
        temperature, top_p = request.temperature, request.top_p
        if self.is_reasoning:
            max_tokens = temperature = top_p = None
        params: dict[str, Any] = {"model": model}
        for key, value in (
            ("max_tokens", max_tokens),
            ("temperature", temperature),
            ("top_p", top_p),
            ("stop", request.stop or None),
            ("seed", request.seed),
            ("response_format", request.response_format),
            ("tools", request.tools),
            ("tool_choice", request.tool_choice),
        ):
            if value is not None:
                params[key] = value
        rf = params.get("response_format")
        if rf and rf.get("type") == "json_schema" and self.config["json_schema_mode"] == "json_object":
            params["response_format"] = {"type": "json_object", "schema": rf["json_schema"]["schema"]}
        elif rf and rf.get("type") == "json_schema" and self.config["json_schema_mode"] == "none":
            params["response_format"] = {"type": "json_object"}
        standard = {k: v for k, v in request.extra.items() if k in ("presence_penalty", "frequency_penalty")}
        extension = {k: v for k, v in request.extra.items() if k not in standard}
        params.update(standard)
        if request.continue_final_message and request.prompt is None and self.prefix_mode == "vllm":
            extension.update(continue_final_message=True, add_generation_prompt=False)
        if request.continue_final_message and request.prompt is None and self.prefix_mode == "siliconflow":
            extension["prefix"] = _text(request.messages[-1].get("content"))
        if extension:  # llama.cpp and vLLM servers read these from the body
            params["extra_body"] = extension
        return params

    def _messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        """The messages as the provider takes a response prefix (see ``prefix_mode``)."""
        messages = request.messages
        if not request.continue_final_message or self.prefix_mode == "vllm":
            return messages
        if messages[-1].get("role") != "assistant":
            raise InvalidRequestError(
                "response_prefix needs the last message to be an assistant message", param="messages"
            )
        if self.prefix_mode == "siliconflow":
            return messages[:-1]
        return [*messages[:-1], {**messages[-1], "prefix": True}]

    def _reasoning(self, obj: Any) -> str:
        """The first reasoning field that is set (some servers send the same text under two names),
        of an SDK object or a parsed JSON object."""
        if isinstance(obj, dict):
            return next((str(obj[name]) for name in self.reasoning_fields if obj.get(name)), "")
        extra = getattr(obj, "model_extra", None) or {}
        for name in self.reasoning_fields:
            value = extra.get(name) or getattr(obj, name, None)
            if value:
                return str(value)
        return ""

    def _open(self, request: ChatRequest, target: Target, timeout: float, cancelled: Cancelled) -> Iterator[ChatChunk]:
        """One streamed attempt: text and reasoning deltas, then the last chunk with usage."""
        params = self._params(request, target.label)
        if self.config["stream_options"]:
            params["stream_options"] = {"include_usage": True}
        usage: dict[str, Any] | None = None
        finish = None
        generated = 0
        completions = target.client.completions if request.prompt is not None else target.client.chat.completions
        body = {"prompt": request.prompt} if request.prompt is not None else {"messages": self._messages(request)}
        # the raw lines, not the SDK's Stream: building its typed chunk objects costs ~50 us a chunk
        # (measured), which a relay of an engine's tokens pays on every token
        with completions.with_streaming_response.create(stream=True, timeout=timeout, **body, **params) as response:
            request_id = response.headers.get("x-request-id")
            for event, data in sse_events(response.iter_lines()):
                if data.startswith("[DONE]"):
                    break
                chunk = json.loads(data)
                if not isinstance(chunk, dict) or event == "error" or chunk.get("error"):
                    raise _stream_error(chunk, self.provider, target.label)
                if chunk.get("usage"):
                    usage = _without_none(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    in_choice = choice.get("usage") if self.config["usage_in_choice"] else None
                    if in_choice:
                        usage = in_choice
                    finish = choice.get("finish_reason") or finish
                    if request.prompt is not None:
                        text, thought = choice.get("text") or "", ""
                    else:
                        delta = choice.get("delta") or {}
                        text, thought = delta.get("content") or "", self._reasoning(delta)
                    if text or thought:
                        generated += 1 if text else 0
                        yield ChatChunk(text, None, (usage or {}).get("prompt_tokens", 0), generated, thought)
                if cancelled():
                    finish = "cancelled"
                    break
        usage = usage or {}
        yield ChatChunk(
            "",
            finish or "stop",
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", generated),
            details={"model": target.label, "request_id": request_id, "usage": usage or None},
        )

    def chat(self, request: ChatRequest, cancelled: Cancelled = _never) -> ChatResponse:
        """A non-streamed call, so the provider's usage (token counts) comes back even from servers
        that do not report usage in streams."""
        check_input_length(request, estimated_tokens(request), estimated=True)
        start = time.perf_counter()
        attempts = self.attempts()

        def once(target: Target, timeout: float) -> Any:
            params = self._params(request, target.label)
            if request.prompt is not None:
                return target.client.completions.with_raw_response.create(
                    prompt=request.prompt, timeout=timeout, **params
                )
            return target.client.chat.completions.with_raw_response.create(
                messages=self._messages(request), timeout=timeout, **params
            )

        raw, target = saas_retry.call(attempts, lambda t, timeout: _parsed(once(t, timeout)))
        raw, out = raw
        calls = None
        thought = ""
        if request.prompt is not None:
            text, finish = out.choices[0].text, out.choices[0].finish_reason
        else:
            message = out.choices[0].message
            text, finish = message.content or "", out.choices[0].finish_reason
            calls = [c.model_dump(exclude_none=True) for c in message.tool_calls or []] or None
            thought = self._reasoning(message)
        cost = time.perf_counter() - start
        usage = out.usage.model_dump(exclude_none=True) if out.usage else {}
        details = {
            "model": target.label,
            "attempts": attempts.count,
            "request_id": raw.headers.get("x-request-id"),
            "usage": usage or None,
        }
        return ChatResponse(
            text,
            finish,
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
            cost,
            cost,
            calls,
            thought,
            details,
        )

    def classify(self, exc: BaseException, target: Target) -> Failure | None:
        """Map an exception of the openai client to the retry loop's view of it."""
        import openai

        return self.sdk_failure(exc, target, openai, lambda e: _upstream(e, self.provider, target.label))

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """The provider's ``/embeddings``: one vector per text (as many floats as the model's
        dimension, in input order, as the provider sent them) and its count of input tokens (0
        when it reports none). Retried like chat. Raises ``UpstreamError``: for the provider's
        error statuses as chat does, and (not retried) for a body that is not one flat vector per
        input, e.g. a llama.cpp server on a model that declares no pooling sends per-token vectors."""

        self._serves("embed")

        def once(target: Target, timeout: float) -> tuple[list[list[float]], int]:
            # floats asked for explicitly: the SDK's default asks for base64, which it decodes
            # itself, and the body is read here to check its shape before anything is returned
            raw = target.client.embeddings.with_raw_response.create(
                model=target.label, input=texts, encoding_format="float", timeout=timeout
            )
            return _embedding_vectors(json.loads(raw.text), len(texts), self.provider, target.label)

        (vectors, tokens), _ = saas_retry.call(self.attempts(), once)
        return vectors, tokens

    # --- speech, transcription, images (OpenAI's audio and image endpoints) ----------------
    @property
    def task(self) -> str:
        """The task this deployment serves (the ``task`` option, or decided by the model name)."""
        if self.config["task"] != "auto":
            return self.config["task"]
        return task_for_model(self.model)

    def capabilities(self) -> dict[str, Any]:
        caps = super().capabilities()
        if self.task != "chat":
            caps["tasks"] = [self.task]
        else:  # image and audio parts go to the provider, which refuses them for a text-only model
            caps["input_modalities"] = ["text", "image", "audio"]
        return caps

    def speech(self, request: SpeechRequest) -> SpeechResponse:
        """``/audio/speech``: the provider's audio in ``request.response_format``, its rate and
        duration read from the file; voice "alloy" when none is given; ``instructions`` sent when set.
        Retried like chat. Raises ``InvalidRequestError`` for a bad ``response_format``,
        ``UpstreamError`` as chat does, or when the answer is not audio of that format."""
        self._serves("speech")
        from ..audio import check_format, probe

        check_format(request.response_format)
        start = time.perf_counter()

        def once(target: Target, timeout: float) -> bytes:
            extra = {"instructions": request.instructions} if request.instructions else {}
            return target.client.audio.speech.create(
                model=target.label,
                input=request.input,
                voice=request.voice or "alloy",
                response_format=request.response_format,
                speed=request.speed,
                timeout=timeout,
                **extra,
            ).content

        audio, _ = saas_retry.call(self.attempts(), once)
        if request.response_format == "pcm":  # no header: OpenAI's pcm is 24 kHz 16-bit mono
            seconds, rate = len(audio) / 2 / OPENAI_PCM_RATE, OPENAI_PCM_RATE
        else:
            try:
                seconds, rate = probe(audio)
            except InvalidRequestError:
                raise UpstreamError(
                    f"{self.provider} sent speech that is not {request.response_format} audio",
                    provider=self.provider,
                ) from None
        return SpeechResponse(audio, request.response_format, rate, seconds, time.perf_counter() - start)

    def transcribe(self, request: TranscriptionRequest) -> Transcription:
        """``/audio/transcriptions`` (``/audio/translations`` for task "translate") in verbose JSON
        with word and segment times. Retried like chat."""
        self._serves("transcription")
        from ..audio import sniff_format

        start = time.perf_counter()
        fmt = sniff_format(request.audio) or "wav"
        words = request.task == "transcribe"

        def once(target: Target, timeout: float) -> Any:
            kwargs: dict[str, Any] = {"prompt": request.prompt} if request.prompt else {}
            # the gpt-4o *-transcribe models answer json or text only: no segments or word times
            verbose = not target.label.lower().endswith("-transcribe")
            if words:
                if verbose:
                    kwargs["timestamp_granularities"] = ["word", "segment"]
                if request.language:
                    kwargs["language"] = request.language
                api = target.client.audio.transcriptions
            else:
                api = target.client.audio.translations
            return api.create(
                model=target.label,
                file=(f"audio.{fmt}", request.audio),
                response_format="verbose_json" if verbose else "json",
                temperature=request.temperature,
                timeout=timeout,
                **kwargs,
            )

        out, _ = saas_retry.call(self.attempts(), once)
        body = out.model_dump() if hasattr(out, "model_dump") else dict(out)
        return Transcription(
            text=body.get("text", ""),
            task=body.get("task") or request.task,
            language=body.get("language") or "",
            duration=float(body.get("duration") or 0.0),
            segments=body.get("segments") or [],
            words=body.get("words") or [],
            time_cost=time.perf_counter() - start,
        )

    def generate_images(self, request: ImageRequest) -> ImageResponse:
        """``/images/generations`` with ``response_format="b64_json"``: PNG bytes per image."""
        self._serves("image")
        import base64

        start = time.perf_counter()
        extra = {k: v for k, v in (("size", request.size), ("quality", request.quality), ("style", request.style)) if v}

        def once(target: Target, timeout: float) -> Any:
            # gpt-image models always answer base64 and refuse the parameter; DALL-E needs it
            form = {} if target.label.lower().startswith("gpt-image") else {"response_format": "b64_json"}
            return target.client.images.generate(
                model=target.label, prompt=request.prompt, n=request.n, timeout=timeout, **form, **extra
            )

        out, _ = saas_retry.call(self.attempts(), once)
        images = [base64.b64decode(d.b64_json) for d in out.data or [] if d.b64_json]
        revised = next((d.revised_prompt for d in out.data or [] if getattr(d, "revised_prompt", None)), None)
        return ImageResponse(images, revised, time.perf_counter() - start)

    def _serves(self, task: str) -> None:
        if self.task != task and not (self.task == "chat" and task in ("embed", "rerank")):
            raise self._not_served(task)

    def meta(self) -> dict[str, Any]:
        schema = self.config["json_schema_mode"] != "none"
        return {
            "backend": self.name,
            "provider": self.provider,
            "model_name": self.model,
            "base_url": self.config["base_url"],
            "fallback_models": [t.label for t in self._targets[1:]],
            "max_model_len": None,
            "support_stream": True,
            "support_chat_template": True,
            "support_response_format": ["json_object"] + (["json_schema"] if schema else []),
            "architectures": [],
            "support_tool_calls": bool(self.config["native_tools"]),
            "model_type": self.task,
            "is_reasoning": self.is_reasoning,
            **({} if self.task == "chat" else {"support_stream": False, "support_tool_calls": False}),
        }

    def close(self) -> None:
        for target in self._targets:
            target.client.close()


# the sample rate of OpenAI's headerless ``pcm`` speech (its API reference)
OPENAI_PCM_RATE = 24000


def task_for_model(model: str) -> str:
    """The task of an OpenAI model id: speech (``tts-1``, ``gpt-4o-mini-tts``), transcription
    (``whisper-1``, ``gpt-4o-transcribe``), image (``dall-e-3``, ``gpt-image-1``), else chat."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith("tts-") or name.endswith("-tts"):
        return "speech"
    if name.startswith("whisper") or name.endswith("-transcribe"):
        return "transcription"
    if name.startswith(("dall-e", "gpt-image")):
        return "image"
    return "chat"


def _parsed(raw: Any) -> tuple[Any, Any]:
    """``(raw response, parsed body)``; a body that is not the JSON promised raises
    ``json.JSONDecodeError`` (retried as a malformed response)."""
    out = raw.parse()
    if isinstance(out, str):  # the SDK hands back text it could not read as JSON
        json.loads(out)
        raise json.JSONDecodeError("the body is not a chat completion", out, 0)
    return raw, out


def _embedding_vectors(body: Any, n: int, provider: str, model: str) -> tuple[list[list[float]], int]:
    """``(vectors, prompt tokens)`` of an OpenAI embeddings body for ``n`` inputs, ordered by each
    item's ``index``. Raises ``UpstreamError`` (status 200: the provider answered, wrongly; not
    retried) when the body is not ``n`` flat vectors of numbers of one length."""

    def bad(why: str) -> UpstreamError:
        return UpstreamError(
            f"{provider} ({model}) sent a malformed embeddings response: {why}",
            status=200,
            provider=provider,
            model=model,
        )

    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise bad("no data list of embedding objects")
    if len(data) != n:
        raise bad(f"{len(data)} embeddings for {n} inputs")
    if all(isinstance(d.get("index"), int) for d in data):
        data = sorted(data, key=lambda d: d["index"])
        if [d["index"] for d in data] != list(range(n)):
            raise bad(f"indexes {[d['index'] for d in data]} are not 0..{n - 1}")
    vectors = []
    for i, item in enumerate(data):
        vector = item.get("embedding")
        if isinstance(vector, list) and vector and all(isinstance(x, list) for x in vector):
            raise bad(
                f"data[{i}].embedding is {len(vector)} vectors (one per token), not one vector per input; "
                "the server pools nothing for this model (a llama.cpp server needs a model that declares "
                "its pooling)"
            )
        if (
            not isinstance(vector, list)
            or not vector
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector)
        ):
            raise bad(f"data[{i}].embedding is not a list of numbers")
        vectors.append([float(x) for x in vector])
    if len({len(v) for v in vectors}) > 1:
        raise bad(f"vectors of different lengths {sorted({len(v) for v in vectors})}")
    usage = body.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return vectors, tokens if isinstance(tokens, int) else 0


def _upstream(exc: Any, provider: str, model: str) -> UpstreamError:
    """An error whose message is the provider's own, with its status and request id."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) and body.get("message") else str(exc)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message", message)
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):  # FastAPI servers (llama-cpp-python's)
        message = body["detail"]
    status = exc.status_code
    return UpstreamError(
        f"{provider} answered {status}: {message}",
        status=status,
        provider=provider,
        model=model,
        request_id=getattr(exc, "request_id", None),
        upstream_message=message,
    )
