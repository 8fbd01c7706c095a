"""JSON schemas for Python types (through pydantic), and model text parsed into them.

A backend whose ``get_meta()`` lists ``json_schema`` in ``support_response_format`` is asked
for the schema directly (llama.cpp turns it into a grammar, so the text is valid by
construction); other backends get ``format_instruction`` in the prompt and their answer is
parsed with ``parse_as``, which finds the first JSON value in the text.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pydantic

from ..errors import InvalidRequestError, OutputParseError


@functools.lru_cache(maxsize=256)
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(tp)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every local ``$ref`` to ``$defs`` replaced by the definition, so that it
    can be embedded in another schema (a tool's arguments in a call schema). Raises
    ``InvalidRequestError`` for a recursive definition, which cannot be inlined."""
    defs = schema.get("$defs", {})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.rsplit("/", 1)[1]
                if name in seen:
                    raise InvalidRequestError(
                        f"schema type {name!r} is recursive; it cannot be inlined", param="schema"
                    )
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**walk(defs[name], (*seen, name)), **walk(rest, seen)}
            return {k: walk(v, seen) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        return node

    return walk(schema, ())


@functools.lru_cache(maxsize=256)
def _schema_json(tp: Any) -> str:
    return json.dumps(inline_refs(_adapter(tp).json_schema()), ensure_ascii=False)


def json_schema_for(tp: Any) -> dict[str, Any]:
    """The JSON schema of a type (pydantic model, dict, list[...], ...), as pydantic writes it."""
    return json.loads(_schema_json(tp))


def response_format_for(tp: Any) -> dict[str, Any]:
    """OpenAI's ``response_format`` asking for JSON that matches ``tp``."""
    name = getattr(tp, "__name__", "output")
    return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema_for(tp), "strict": True}}


def format_instruction(tp: Any) -> str:
    """The prompt text that asks a model without constrained decoding for JSON of type ``tp``."""
    return schema_instruction(_schema_json(tp))


def schema_instruction(schema: dict[str, Any] | str) -> str:
    """The prompt text asking for JSON of a JSON schema (a dict or its JSON text)."""
    text = schema if isinstance(schema, str) else json.dumps(schema, ensure_ascii=False)
    return f"\n\nAnswer with only a JSON value, no other text, that matches this JSON schema:\n{text}"


def extract_json(text: str) -> str:
    """The first complete JSON object or array in ``text`` (code fences and prose around it
    are skipped). Raises ``OutputParseError`` when there is none."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                _, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            return text[i:end]
    raise OutputParseError(f"no JSON value found in the model output: {text[:200]!r}", output=text)


def parse_as(tp: Any, text: str) -> Any:
    """Validate the JSON in ``text`` as ``tp``. Raises ``OutputParseError`` whose message is
    pydantic's validation error (it is what a re-ask shows the model)."""
    raw = extract_json(text)
    try:
        return _adapter(tp).validate_json(raw)
    except pydantic.ValidationError as exc:
        raise OutputParseError(
            f"the model output does not match {getattr(tp, '__name__', tp)}: {exc}", output=text
        ) from None
