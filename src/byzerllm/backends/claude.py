"""Anthropic's Claude models through the Messages API (``saas/claude``), with the ``anthropic`` SDK.

Translation from the internal (OpenAI-shaped) request, after Anthropic's API reference
(https://docs.anthropic.com/en/api/messages): system messages become the top-level ``system``
text; tool calls of assistant messages become ``tool_use`` blocks and ``tool`` messages
``tool_result`` blocks of a user message; OpenAI tools become ``{"name", "description",
"input_schema"}``; ``tool_choice`` "auto" / "required" / "none" / a tool name become ``auto`` /
``any`` / ``none`` / ``tool``. Streams are read from the SSE events (``message_start`` carries the
input tokens, ``content_block_delta`` text, thinking and tool-input pieces, ``message_delta`` the
stop reason and output tokens). ``max_tokens`` is required by the API: 4096 unless the request or
``max_output_tokens`` says otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..errors import InvalidRequestError, UpstreamError
from ..types import ChatChunk, ChatRequest, ChatResponse
from . import saas_retry
from .base import Cancelled, _never
from .openai_compat import SaaSBackend, SaaSOptions
from .saas_retry import Failure, Target

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "stop",
}
DEFAULT_MAX_TOKENS = 4096


class ClaudeOptions(SaaSOptions):
    thinking_budget: int | None = Field(
        None, ge=1, description="tokens of extended thinking (off when unset; Anthropic asks for 1024 or more)"
    )


class ClaudeBackend(SaaSBackend):
    """Deploy options: those of every SaaS backend (``model``, ``api_key`` or ``api_key_env``,
    ``base_url``, ``timeout``, ``max_retries``, ``deadline``, ``backoff``, ``max_backoff``,
    ``fallback_models``, ``https_verify``, ``proxies``, ``local_address``, ``max_output_tokens``,
    ``extra_headers``) and ``thinking_budget`` (tokens of extended thinking; off when unset).

    Raises ``UpstreamError`` with Anthropic's status, ``request-id`` and message.
    """

    name = "claude"
    Options = ClaudeOptions
    request_options = frozenset({"top_k"})

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "input_modalities": ["text", "image"]}

    def __init__(self, model_path: str, options: dict[str, Any]) -> None:
        super().__init__(model_path, options)
        cfg = self.config
        cfg["base_url"] = cfg["base_url"] or "https://api.anthropic.com"
        self.model = cfg["model"] or model_path
        if not self.model:
            raise InvalidRequestError("saas.model is required (the Claude model id)", param="saas.model")
        self.client = self.make_client(cfg)
        self._targets = self.targets()

    def make_client(self, cfg: dict[str, Any]) -> Any:
        import anthropic

        return anthropic.Anthropic(
            api_key=cfg.get("api_key") or "none",
            base_url=cfg["base_url"],
            max_retries=0,
            timeout=float(cfg["timeout"]),
            default_headers=cfg.get("extra_headers") or None,
            http_client=self.http_client(cfg),
        )

    # --- request translation ------------------------------------------------------------
    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        if request.prompt is not None:
            raise InvalidRequestError(
                "the claude backend takes chat messages only; a client-side template "
                "(setup_template) does not apply to it",
                param="template",
            )
        if request.response_format is not None:
            raise InvalidRequestError(
                "the claude backend has no response_format; typed outputs use the prompt strategy",
                param="response_format",
            )
        cap = self.config["max_output_tokens"]
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": min(x for x in (request.max_tokens, cap, None) if x)
            if (request.max_tokens or cap)
            else DEFAULT_MAX_TOKENS,
        }
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = request.stop
        # this SDK's create() no longer names the sampling fields; the API still reads them from the body
        sampling = {
            k: v
            for k, v in (
                ("temperature", request.temperature),
                ("top_p", request.top_p),
                ("top_k", request.extra.get("top_k")),
            )
            if v is not None
        }
        if sampling:
            params["extra_body"] = sampling
        if request.tools:
            params["tools"] = [to_anthropic_tool(t) for t in request.tools]
            if request.tool_choice is not None:
                params["tool_choice"] = to_anthropic_tool_choice(request.tool_choice)
        if self.config["thinking_budget"]:
            params["thinking"] = {"type": "enabled", "budget_tokens": int(self.config["thinking_budget"])}
        return params

    # --- calls --------------------------------------------------------------------------
    def _open(self, request: ChatRequest, target: Target, timeout: float, cancelled: Cancelled) -> Iterator[ChatChunk]:
        params = self._params(request, target.label)
        stream = target.client.messages.create(stream=True, timeout=timeout, **params)
        request_id = getattr(stream, "response", None) and stream.response.headers.get("request-id")
        input_tokens = output_tokens = generated = 0
        finish = None
        with stream:
            for event in stream:
                kind = event.type
                if kind == "message_start":
                    input_tokens = event.message.usage.input_tokens or 0
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        generated += 1
                        yield ChatChunk(delta.text, None, input_tokens, generated)
                    elif delta.type == "thinking_delta" and delta.thinking:
                        yield ChatChunk("", None, input_tokens, generated, delta.thinking)
                elif kind == "message_delta":
                    finish = STOP_REASONS.get(event.delta.stop_reason or "", event.delta.stop_reason)
                    output_tokens = event.usage.output_tokens or output_tokens
                if cancelled():
                    finish = "cancelled"
                    break
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens or generated,
            "total_tokens": input_tokens + (output_tokens or generated),
        }
        yield ChatChunk(
            "",
            finish or "stop",
            input_tokens,
            output_tokens or generated,
            details={"model": target.label, "request_id": request_id, "usage": usage},
        )

    def chat(self, request: ChatRequest, cancelled: Cancelled = _never) -> ChatResponse:
        start = time.perf_counter()
        attempts = self.attempts()

        def once(target: Target, timeout: float) -> Any:
            raw = target.client.messages.with_raw_response.create(
                timeout=timeout, **self._params(request, target.label)
            )
            return raw, raw.parse()

        (raw, out), target = saas_retry.call(attempts, once)
        text, thought, calls = [], [], []
        for block in out.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "thinking":
                thought.append(block.thinking)
            elif block.type == "tool_use":
                arguments = json.dumps(block.input, ensure_ascii=False)
                calls.append(
                    {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}
                )
        cost = time.perf_counter() - start
        u = out.usage
        usage = {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
        }
        details = {
            "model": target.label,
            "attempts": attempts.count,
            "request_id": raw.headers.get("request-id"),
            "usage": usage,
        }
        return ChatResponse(
            "".join(text),
            STOP_REASONS.get(out.stop_reason or "", out.stop_reason),
            u.input_tokens,
            u.output_tokens,
            cost,
            cost,
            calls or None,
            "".join(thought),
            details,
        )

    def classify(self, exc: BaseException, target: Target) -> Failure | None:
        import anthropic

        return self.sdk_failure(exc, target, anthropic, lambda e: self._status_error(e, target))

    def _status_error(self, exc: Any, target: Target) -> UpstreamError:
        """Anthropic's status error with its message and ``request-id``."""
        body = exc.body if isinstance(exc.body, dict) else {}
        message = (body.get("error") or {}).get("message") or str(exc)
        return UpstreamError(
            f"{self.provider} answered {exc.status_code}: {message}",
            status=exc.status_code,
            provider=self.provider,
            model=target.label,
            upstream_message=message,
            request_id=exc.response.headers.get("request-id"),
        )

    def meta(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "provider": self.provider,
            "model_name": self.model,
            "base_url": self.config["base_url"],
            "fallback_models": [t.label for t in self._targets[1:]],
            "max_model_len": None,
            "support_stream": True,
            "support_chat_template": True,
            "support_response_format": [],
            "architectures": [],
            "support_tool_calls": True,
            "model_type": "chat",
        }

    def close(self) -> None:
        for target in self._targets:
            target.client.close()


def _content(content: Any) -> Any:
    """OpenAI message content as Anthropic content: text stays text; parts become blocks."""
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
            if url.startswith("data:"):
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise InvalidRequestError(
                f"message part type {kind!r} is not supported by the claude backend; accepted: text, image_url",
                param="conversations",
            )
    return blocks


def to_anthropic_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``(system text, messages)`` in the Messages API's shape from OpenAI chat messages."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg["role"]
        if role == "system":
            content = msg["content"]
            system.append(content if isinstance(content, str) else " ".join(p.get("text", "") for p in content))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": msg.get("tool_call_id", ""),
                "content": _content(msg["content"]),
            }
            if (
                out
                and out[-1]["role"] == "user"
                and isinstance(out[-1]["content"], list)
                and out[-1]["content"]
                and out[-1]["content"][0].get("type") == "tool_result"
            ):
                out[-1]["content"].append(block)  # results of one turn's calls go in one user message
            else:
                out.append({"role": "user", "content": [block]})
        elif role == "assistant" and msg.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            text = _content(msg.get("content"))
            if text:
                blocks.extend([{"type": "text", "text": text}] if isinstance(text, str) else text)
            for call in msg["tool_calls"]:
                args = call["function"].get("arguments") or "{}"
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": call["function"]["name"],
                        "input": json.loads(args) if isinstance(args, str) else args,
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": role, "content": _content(msg["content"])})
    return "\n\n".join(system), out


def to_anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function", tool)
    return {
        "name": fn["name"],
        "description": fn.get("description", ""),
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }


def to_anthropic_tool_choice(choice: Any) -> dict[str, Any]:
    if choice in ("auto", None):
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice.get("function", choice)["name"]}
    return {"type": "tool", "name": str(choice)}
