"""Tool calls and typed responses as plans over plain chat, for any backend.

The strategy comes from the deployment's ``get_meta()``: ``constrained`` when it lists
``json_schema`` in ``support_response_format`` (llama.cpp: the JSON schema becomes a grammar,
so a call of an existing tool with well-typed arguments, or a response of the requested
schema, is valid by construction); otherwise ``prompt``: the schema is described in the prompt,
the JSON is found in the text and validated. JSON that fails is asked for once more by the rule of
``structured.repair`` (sampled again when constrained output was cut off, else re-asked with the
error). What still fails comes back as ``reason``, not as an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pydantic

from ..errors import InvalidRequestError, OutputParseError
from .output import extract_json, json_schema_for, parse_as
from .plan import Call, Plan
from .repair import one_call, parsed_plan
from .tools import Tool, ToolCall, call_schema, parse_call, tools_prompt

STRATEGIES = ("auto", "native", "constrained", "prompt")


def pick_strategy(meta: dict[str, Any], forced: str = "auto", for_tools: bool = False) -> str:
    """``native`` (the provider's own tool calling; tools only), ``constrained`` or ``prompt``."""
    if forced not in STRATEGIES:
        raise InvalidRequestError(
            f"structured strategy {forced!r} is unknown; accepted: {', '.join(STRATEGIES)}", param="strategy"
        )
    if forced != "auto":
        return forced if forced != "native" or for_tools else pick_strategy(meta, "auto")
    if for_tools and meta.get("support_tool_calls"):
        return "native"
    return "constrained" if "json_schema" in meta.get("support_response_format", ()) else "prompt"


def _with_system(conversations: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if conversations and conversations[0].get("role") == "system":
        first = conversations[0]
        return [{**first, "content": f"{text}\n\n{first['content']}"}, *conversations[1:]]
    return [{"role": "system", "content": text}, *conversations]


def _json_plan(
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    strategy: str,
    llm_config: dict[str, Any],
    validate: Callable[[Any], Any],
) -> Plan:
    """Ask for JSON of ``schema`` with ``structured.repair``'s rule; ``validate(parsed)`` returns
    the value or raises ``OutputParseError``. Returns ``(value, text, reason)``."""
    extra = {}
    if strategy == "constrained":
        extra["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return (
        yield from parsed_plan(
            one_call(extra),
            messages,
            llm_config,
            lambda text: validate(json.loads(extract_json(text))),
            constrained=strategy == "constrained",
        )
    )


def _native_plan(conversations: list[dict[str, Any]], tools: list[Tool], llm_config: dict[str, Any]) -> Plan:
    """The provider calls the tool itself; its arguments are still validated, with one re-ask."""
    choice: Any = "required" if len(tools) > 1 else {"type": "function", "function": {"name": tools[0].name}}
    extra = {"tools": [t.openai() for t in tools], "tool_choice": choice}
    messages, reason, text = conversations, "", ""
    for attempt in (0, 1):
        resp = yield Call(messages, dict(llm_config), extra)
        text = resp.output
        calls = resp.metadata.get("tool_calls") or []
        if not calls:
            reason = "the model answered without calling a tool"
        else:
            fn = calls[0].get("function", {})
            try:
                call = parse_call(tools, {"name": fn.get("name"), "arguments": json.loads(fn.get("arguments") or "{}")})
                if calls[0].get("id"):
                    call.id = calls[0]["id"]
                return call, text, ""
            except (OutputParseError, json.JSONDecodeError) as exc:
                reason = str(exc)
        if attempt == 0:
            messages = [
                *conversations,
                {"role": "assistant", "content": text or json.dumps(calls)},
                {"role": "user", "content": f"{reason}\nCall one of the tools with valid arguments."},
            ]
    return None, text, reason


def tool_call_plan(
    conversations: list[dict[str, Any]],
    tools: list[Tool],
    strategy: str,
    llm_config: dict[str, Any],
    format_func: Callable[[list[dict]], str] | None = None,
) -> Plan:
    """Returns ``(ToolCall | None, text, reason)``."""
    if strategy == "native":
        return (yield from _native_plan(conversations, tools, llm_config))
    instruction = format_func([t.openai() for t in tools]) if format_func else tools_prompt(tools)
    messages = _with_system(conversations, instruction)
    call, text, reason = yield from _json_plan(
        messages, call_schema(tools), strategy, llm_config, lambda data: parse_call(tools, data)
    )
    return call, text, reason


def _class_validator(response_class: Any) -> tuple[dict[str, Any], Callable[[Any], Any]]:
    if isinstance(response_class, str):
        try:
            schema = json.loads(response_class)
            jsonschema.Draft202012Validator.check_schema(schema)
        except (json.JSONDecodeError, jsonschema.SchemaError) as exc:
            raise InvalidRequestError(
                f"response_class is a string but not a JSON schema: {exc}", param="response_class"
            ) from None

        def validate(data: Any) -> Any:
            try:
                jsonschema.validate(data, schema)
            except jsonschema.ValidationError as exc:
                raise OutputParseError(f"the output does not match the schema: {exc.message}") from None
            return data

        return schema, validate
    if isinstance(response_class, type) and issubclass(response_class, pydantic.BaseModel):
        return json_schema_for(response_class), lambda data: parse_as(response_class, json.dumps(data))
    raise InvalidRequestError(
        "response_class must be a pydantic model class or a JSON schema string", param="response_class"
    )


def class_plan(
    conversations: list[dict[str, Any]],
    response_class: Any,
    after_chat: bool,
    strategy: str,
    llm_config: dict[str, Any],
    format_func: Callable[[dict], str] | None = None,
) -> Plan:
    """Returns ``(value | None, text, reason)``. With ``after_chat`` the model first answers in
    prose, then that answer is turned into the schema in a second request."""
    schema, validate = _class_validator(response_class)
    instruction = (
        format_func(schema)
        if format_func
        else "Reply with only a JSON object, no other text, that matches this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )
    if after_chat:
        answer = yield Call(conversations, dict(llm_config))
        messages = [
            {"role": "system", "content": instruction},
            {"role": "user", "content": "Put the following answer into the JSON object.\n\n" + answer.output},
        ]
    else:
        messages = _with_system(conversations, instruction)
    value, text, reason = yield from _json_plan(messages, schema, strategy, llm_config, validate)
    return value, text, reason


__all__ = ["STRATEGIES", "ToolCall", "class_plan", "pick_strategy", "tool_call_plan"]
