"""SaaS and self-hosted models behind an OpenAI-compatible API (``saas/openai``).

Any server that speaks OpenAI's chat-completions API: OpenAI itself, DeepSeek, Moonshot,
SiliconFlow, DashScope's compatible mode, Ollama, vLLM and llama.cpp servers. Requests go
through the official ``openai`` client, whose retries (exponential backoff with jitter, honouring
``Retry-After``, on 408/409/429/5xx and connection errors) happen before any token is streamed,
never after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidRequestError, UpstreamError
from ..types import ChatChunk, ChatRequest, ChatResponse
from .base import Backend, Cancelled, _never

PROVIDER = "openai-compatible"


class OpenAICompatBackend(Backend):
    """Deploy options (``infer_params``, ``saas.`` prefix optional): ``model`` (required),
    ``api_key``, ``base_url`` (default OpenAI's), ``timeout`` (seconds per request, default 60),
    ``max_retries`` (default 2), ``https_verify`` (false disables TLS verification),
    ``proxies`` (a proxy URL), ``local_address`` (the local IP to connect from),
    ``max_output_tokens`` (a cap on max_tokens), ``extra_headers`` (a dict), ``json_schema_mode``
    (``json_schema``, OpenAI's shape, by default; ``json_object`` sends
    ``{"type": "json_object", "schema": ...}`` as llama-cpp-python's server expects),
    ``native_tools`` (true: tools are sent as OpenAI ``tools`` and the provider's tool calls read
    back; false for servers without tool calling, which then get the prompt/grammar strategies).

    Raises ``UpstreamError`` carrying the provider's status, request id and message.
    """

    name = "openai"
    options = {"model": None, "api_key": None, "base_url": "https://api.openai.com/v1", "timeout": 60.0,
               "max_retries": 2, "https_verify": True, "proxies": None, "local_address": None,
               "max_output_tokens": None, "extra_headers": None, "json_schema_mode": "json_schema",
               "native_tools": True}
    request_options = frozenset({"presence_penalty", "frequency_penalty", "top_k", "min_p", "repetition_penalty",
                                 "ignore_eos"})
    thread_safe = True

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        import httpx
        import openai

        cfg = self.config
        self.model = cfg["model"] or model_path
        if not self.model:
            raise InvalidRequestError("saas.model is required (the provider's model id)", param="saas.model")
        transport = httpx.HTTPTransport(local_address=cfg["local_address"]) if cfg["local_address"] else None
        http = httpx.Client(verify=bool(cfg["https_verify"]), proxy=cfg["proxies"], transport=transport,
                            timeout=float(cfg["timeout"]))
        self.client = openai.OpenAI(api_key=cfg["api_key"] or "none", base_url=cfg["base_url"],
                                    max_retries=int(cfg["max_retries"]), timeout=float(cfg["timeout"]),
                                    default_headers=cfg["extra_headers"] or None, http_client=http)

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        cap = self.config["max_output_tokens"]
        max_tokens = min(x for x in (request.max_tokens, cap) if x) if (request.max_tokens or cap) else None
        params: dict[str, Any] = {"model": self.model}
        for key, value in (("max_tokens", max_tokens), ("temperature", request.temperature),
                           ("top_p", request.top_p), ("stop", request.stop or None), ("seed", request.seed),
                           ("response_format", request.response_format), ("tools", request.tools),
                           ("tool_choice", request.tool_choice)):
            if value is not None:
                params[key] = value
        rf = params.get("response_format")
        if rf and rf.get("type") == "json_schema" and self.config["json_schema_mode"] == "json_object":
            params["response_format"] = {"type": "json_object", "schema": rf["json_schema"]["schema"]}
        standard = {k: v for k, v in request.extra.items() if k in ("presence_penalty", "frequency_penalty")}
        extension = {k: v for k, v in request.extra.items() if k not in standard}
        params.update(standard)
        if extension:  # llama.cpp and vLLM servers read these from the body
            params["extra_body"] = extension
        return params

    def stream(self, request: ChatRequest, cancelled: Cancelled = _never) -> Iterator[ChatChunk]:
        import openai

        params = self._params(request)
        usage = None
        finish = None
        generated = 0
        try:
            if request.prompt is not None:
                stream = self.client.completions.create(prompt=request.prompt, stream=True,
                                                        stream_options={"include_usage": True}, **params)
            else:
                stream = self.client.chat.completions.create(messages=request.messages, stream=True,
                                                             stream_options={"include_usage": True}, **params)
            with stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        text = choice.text if request.prompt is not None else (choice.delta.content or "")
                        finish = choice.finish_reason or finish
                        if text:
                            generated += 1
                            yield ChatChunk(text, None, usage.prompt_tokens if usage else 0, generated)
                    if cancelled():
                        finish = "cancelled"
                        break
        except openai.APIError as exc:
            raise self._error(exc) from None
        yield ChatChunk("", finish or "stop", usage.prompt_tokens if usage else 0,
                        usage.completion_tokens if usage else generated)

    def chat(self, request: ChatRequest, cancelled: Cancelled = _never) -> ChatResponse:
        """A non-streamed call, so the provider's usage (token counts) comes back even from servers
        that do not report usage in streams."""
        import openai

        params = self._params(request)
        start = time.perf_counter()
        try:
            if request.prompt is not None:
                out = self.client.completions.create(prompt=request.prompt, **params)
                text, finish = out.choices[0].text, out.choices[0].finish_reason
            else:
                out = self.client.chat.completions.create(messages=request.messages, **params)
                message = out.choices[0].message
                text, finish = message.content or "", out.choices[0].finish_reason
                calls = [c.model_dump(exclude_none=True) for c in message.tool_calls or []]
        except openai.APIError as exc:
            raise self._error(exc) from None
        cost = time.perf_counter() - start
        usage = out.usage
        return ChatResponse(text, finish, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                            cost, cost, (calls or None) if request.prompt is None else None)

    def _error(self, exc: Exception) -> UpstreamError:
        """The ``UpstreamError`` for an exception of the openai client."""
        import openai

        if isinstance(exc, openai.APIStatusError):
            return _upstream(exc)
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamError(f"{PROVIDER} at {self.config['base_url']} did not answer within "
                                 f"{self.config['timeout']}s", status=504, provider=PROVIDER)
        return UpstreamError(f"request to {self.config['base_url']} failed: {exc}", status=502, provider=PROVIDER)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        import openai

        try:
            out = self.client.embeddings.create(model=self.model, input=texts)
        except openai.APIError as exc:
            raise self._error(exc) from None
        return [d.embedding for d in out.data], out.usage.prompt_tokens if out.usage else 0

    def meta(self) -> dict[str, Any]:
        return {"backend": self.name, "model_name": self.model, "base_url": self.config["base_url"],
                "max_model_len": None, "support_stream": True, "support_chat_template": True,
                "support_response_format": ["json_object", "json_schema"], "architectures": [],
                "support_tool_calls": bool(self.config["native_tools"]),
                "model_type": "chat"}

    def close(self) -> None:
        self.client.close()


def _upstream(exc: Any) -> UpstreamError:
    """An error whose message is the provider's own, with its status and request id."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) and body.get("message") else str(exc)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message", message)
    status = exc.status_code
    return UpstreamError(f"{PROVIDER} answered {status}: {message}", status=status, provider=PROVIDER,
                         request_id=getattr(exc, "request_id", None), upstream_message=message)
