"""Tools: plain Python callables or OpenAI-format JSON tool schemas, and the calls a model makes.

A callable is described by its name, its docstring (the summary; ``Args:`` entries describe the
parameters) and its signature; ``Annotated[type, "description", {"enum": [...]}]`` adds a
description and JSON-schema keywords to a parameter. Arguments a model produces are validated
(and coerced) by a pydantic model built from the signature.
"""

from __future__ import annotations

import inspect
import json
import traceback
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import docstring_parser
import jsonschema
import pydantic

from ..errors import InvalidRequestError, OutputParseError
from .output import inline_refs


@dataclass
class Tool:
    """One tool: ``parameters`` is a JSON schema object; ``fn`` is None for a schema-only tool."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable | None = None
    model: type[pydantic.BaseModel] | None = field(default=None, repr=False)

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Validated (and, for callables, coerced) arguments. Raises ``OutputParseError``."""
        if not isinstance(arguments, dict):
            raise OutputParseError(f"arguments of {self.name} must be a JSON object, got {arguments!r}")
        if self.model is not None:
            try:
                return self.model.model_validate(arguments).model_dump()
            except pydantic.ValidationError as exc:
                raise OutputParseError(f"arguments of {self.name} are invalid: {exc}") from None
        try:
            jsonschema.validate(arguments, self.parameters)
        except jsonschema.ValidationError as exc:
            raise OutputParseError(f"arguments of {self.name} are invalid: {exc.message}") from None
        return arguments


def new_call_id() -> str:
    """An id in OpenAI's ``call_...`` style."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCall:
    """A call the model chose: ``arguments`` validated against the tool's parameters."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=new_call_id)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


def _from_callable(fn: Callable) -> Tool:
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    described = {p.arg_name: p.description for p in doc.params}
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        tp = hints.get(name, Any)
        description = described.get(name)
        extra: dict[str, Any] = {}
        if typing.get_origin(tp) is Annotated:
            tp, *meta = typing.get_args(tp)
            for item in meta:
                if isinstance(item, str):
                    description = item
                elif isinstance(item, dict):
                    extra.update(item)
        default = ... if param.default is param.empty else param.default
        fields[name] = (tp, pydantic.Field(default, description=description, json_schema_extra=extra or None))
    model = pydantic.create_model(f"{fn.__name__}_arguments", **fields)
    schema = inline_refs(model.model_json_schema())
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    description = " ".join(filter(None, [doc.short_description, doc.long_description])) or fn.__name__
    return Tool(fn.__name__, description, schema, fn, model)


def _from_schema(spec: dict[str, Any]) -> Tool:
    fn = spec.get("function", spec) if spec.get("type", "function") == "function" else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequestError(
            'a tool schema must look like {"type": "function", "function": {"name": ..., "parameters": {...}}}',
            param="tools",
        )
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    try:
        jsonschema.Draft202012Validator.check_schema(params)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(
            f"parameters of tool {fn['name']!r} are not a JSON schema: {exc.message}", param="tools"
        ) from None
    return Tool(fn["name"], fn.get("description", ""), params)


def to_tools(tools: list[Any]) -> list[Tool]:
    """Tools from callables and OpenAI-format schemas. Raises ``InvalidRequestError``."""
    if not isinstance(tools, list) or not tools:
        raise InvalidRequestError("tools must be a non-empty list of callables or tool schemas", param="tools")
    out = [
        t
        if isinstance(t, Tool)
        else _from_schema(t)
        if isinstance(t, dict)
        else _from_callable(t)
        if callable(t)
        else None
        for t in tools
    ]
    if None in out:
        raise InvalidRequestError("tools must be callables or OpenAI tool schemas", param="tools")
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"tool names must be unique, got {names}", param="tools")
    return out


def choose(tools: list[Tool], tool_choice: Any) -> list[Tool]:
    """The tools the model may call under ``tool_choice`` ("auto", "required", a name, or the
    OpenAI ``{"type": "function", "function": {"name": ...}}``)."""
    if tool_choice in (None, "auto", "required"):
        return tools
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else tool_choice
    picked = [t for t in tools if t.name == name]
    if not picked:
        raise InvalidRequestError(
            f"tool_choice names {name!r}, which is not among the tools: {', '.join(t.name for t in tools)}",
            param="tool_choice",
        )
    return picked


def call_schema(tools: list[Tool]) -> dict[str, Any]:
    """The JSON schema of one call: ``{"name": <a tool>, "arguments": {...}}``, one branch per
    tool, so that a grammar admits only well-formed calls of existing tools."""
    branches = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def tools_prompt(tools: list[Tool]) -> str:
    """The system text that describes the tools and the reply format."""
    lines = [
        "You can call one of these functions. Reply with only a JSON object "
        '{"name": <function name>, "arguments": {<argument>: <value>}} and no other text.',
        "",
    ]
    for t in tools:
        lines.append(f"- {t.name}: {t.description}")
        lines.append(f"  arguments (JSON schema): {json.dumps(t.parameters, ensure_ascii=False)}")
    return "\n".join(lines)


def parse_call(tools: list[Tool], data: Any) -> ToolCall:
    """A ``ToolCall`` from the parsed JSON a model produced. Raises ``OutputParseError``."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise OutputParseError(f'expected {{"name": ..., "arguments": {{...}}}}, got {str(data)[:200]}')
    by_name = {t.name: t for t in tools}
    tool = by_name.get(data["name"])
    if tool is None:
        raise OutputParseError(f"function {data['name']!r} does not exist; choose one of: {', '.join(by_name)}")
    return ToolCall(tool.name, tool.validate(data.get("arguments", {})))


def execute(tools: list[Tool], call: ToolCall, extra_params: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Run a call: ``(value, "")``, or ``(None, reason)`` when the tool raised (a summary of its
    traceback) or has no Python function."""
    tool = next(t for t in tools if t.name == call.name)
    if tool.fn is None:
        return None, f"{tool.name} is a schema-only tool: there is no function to execute"
    try:
        return tool.fn(**call.arguments, **(extra_params or {})), ""
    except Exception as exc:  # a failing tool is an answer, not a crash
        frames = traceback.format_exception(exc, limit=-3)
        return None, f"{tool.name} raised {type(exc).__name__}: {exc}\n" + "".join(frames[-4:]).strip()
