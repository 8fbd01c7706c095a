"""Plans: the logic of a multi-step call written once, run by a sync or an async driver.

A plan is a generator that yields ``Call``s (the chat requests it needs) and receives each
``LLMResponse``; its return value is the result. ``run_plan`` sends the calls with
``client.chat_oai``, ``arun_plan`` with ``client.async_chat_oai``.

A provider that refuses ``response_format: json_schema`` (DeepSeek answers 400 "This
response_format type is unavailable now") gets the call again with the schema described in the
prompt instead, and the client remembers the refusal for that deployment (``get_meta`` stops
listing ``json_schema``), so its later typed calls go straight to prompt-and-parse.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UpstreamError
from ..types import LLMResponse
from .output import schema_instruction


@dataclass
class Call:
    """One chat request of a plan: messages, ``llm_config`` and ``extra_request_params``."""

    messages: list[dict[str, Any]]
    llm_config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


Plan = Generator[Call, LLMResponse, Any]


def _schema_refused(call: Call, exc: UpstreamError) -> bool:
    rf = call.extra.get("response_format") or {}
    return rf.get("type") == "json_schema" and exc.details.get("status") in (400, 422)


def _without_schema(call: Call) -> Call:
    """``call`` with its JSON schema moved from ``response_format`` into the last message."""
    text = schema_instruction(call.extra["response_format"].get("json_schema", {}).get("schema", {}))
    last = call.messages[-1]
    content = last["content"]
    content = [*content, {"type": "text", "text": text.strip()}] if isinstance(content, list) else content + text
    extra = {k: v for k, v in call.extra.items() if k != "response_format"}
    return Call([*call.messages[:-1], {**last, "content": content}], call.llm_config, extra)


def _send(client: Any, model: str, call: Call) -> LLMResponse:
    try:
        [resp] = client.chat_oai(
            call.messages, model=model, llm_config=call.llm_config, extra_request_params=call.extra
        )
    except UpstreamError as exc:
        if not _schema_refused(call, exc):
            raise
        client.forget_response_format(model, "json_schema")
        call = _without_schema(call)
        [resp] = client.chat_oai(
            call.messages, model=model, llm_config=call.llm_config, extra_request_params=call.extra
        )
    return resp


async def _asend(client: Any, model: str, call: Call) -> LLMResponse:
    try:
        [resp] = await client.async_chat_oai(
            call.messages, model=model, llm_config=call.llm_config, extra_request_params=call.extra
        )
    except UpstreamError as exc:
        if not _schema_refused(call, exc):
            raise
        client.forget_response_format(model, "json_schema")
        call = _without_schema(call)
        [resp] = await client.async_chat_oai(
            call.messages, model=model, llm_config=call.llm_config, extra_request_params=call.extra
        )
    return resp


def run_plan(plan: Plan, client: Any, model: str, responses: list[LLMResponse] | None = None) -> Any:
    """Drive ``plan`` with blocking calls; every response is appended to ``responses``."""
    try:
        call = next(plan)
        while True:
            resp = _send(client, model, call)
            if responses is not None:
                responses.append(resp)
            call = plan.send(resp)
    except StopIteration as done:
        return done.value


async def arun_plan(plan: Plan, client: Any, model: str, responses: list[LLMResponse] | None = None) -> Any:
    """Drive ``plan`` with awaited calls; every response is appended to ``responses``."""
    try:
        call = next(plan)
        while True:
            resp = await _asend(client, model, call)
            if responses is not None:
                responses.append(resp)
            call = plan.send(resp)
    except StopIteration as done:
        return done.value
