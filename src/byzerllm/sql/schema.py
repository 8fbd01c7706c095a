"""SQL column types for a JSON schema: the struct a typed model function returns.

A JSON schema (or a pydantic model's) maps to one type tree, written for DuckDB, Spark and Arrow:
``string`` VARCHAR / string, ``integer`` BIGINT / bigint, ``number`` DOUBLE / double, ``boolean``,
``array`` a list of its ``items``, ``object`` a struct of its ``properties`` (in their order);
anything else (a union, a free-form object) is its JSON text in a VARCHAR / string.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidRequestError

Kind = Any  # "string" | "bigint" | "double" | "boolean" | "json" | ("list", Kind) | ("struct", [(name, Kind)])
_SCALARS = {"string": "string", "integer": "bigint", "number": "double", "boolean": "boolean"}


def json_schema(response_class: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model class, a schema dict or its JSON text."""
    if isinstance(response_class, str):
        response_class = json.loads(response_class)
    if isinstance(response_class, dict):
        return response_class
    from ..structured.output import json_schema_for

    return json_schema_for(response_class)


def kind_of(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Kind:
    """The type tree of ``schema`` (``$ref`` into ``$defs`` resolved against ``root``)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return kind_of(root.get("$defs", {}).get(name, {}), root)
    kind = schema.get("type")
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array" and isinstance(schema.get("items"), dict):
        return ("list", kind_of(schema["items"], root))
    if kind == "object" and schema.get("properties"):
        return ("struct", [(name, kind_of(sub, root)) for name, sub in schema["properties"].items()])
    return "json"


def struct_of(response_class: Any) -> Kind:
    """The type tree of a typed function's schema, which must describe an object with properties.
    Raises ``InvalidRequestError`` otherwise."""
    kind = kind_of(json_schema(response_class))
    if not (isinstance(kind, tuple) and kind[0] == "struct"):
        raise InvalidRequestError(
            "a typed SQL function needs a schema of an object with properties (a pydantic model)",
            param="response_class",
        )
    return kind


def duckdb_type(kind: Kind) -> str:
    if isinstance(kind, tuple):
        if kind[0] == "list":
            return duckdb_type(kind[1]) + "[]"
        return "STRUCT(" + ", ".join(f'"{n}" {duckdb_type(k)}' for n, k in kind[1]) + ")"
    return {"string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN"}.get(kind, "VARCHAR")


def spark_type(kind: Kind) -> str:
    if isinstance(kind, tuple):
        if kind[0] == "list":
            return f"array<{spark_type(kind[1])}>"
        return "struct<" + ",".join(f"`{n}`:{spark_type(k)}" for n, k in kind[1]) + ">"
    return kind if kind in ("string", "bigint", "double", "boolean") else "string"


def arrow_type(kind: Kind) -> Any:
    import pyarrow as pa

    if isinstance(kind, tuple):
        if kind[0] == "list":
            return pa.list_(arrow_type(kind[1]))
        return pa.struct([(n, arrow_type(k)) for n, k in kind[1]])
    return {"bigint": pa.int64(), "double": pa.float64(), "boolean": pa.bool_()}.get(kind, pa.string())


def conform(value: Any, kind: Kind) -> Any:
    """``value`` (parsed JSON) shaped to ``kind``: missing struct fields are NULL, ``json`` is text."""
    if value is None:
        return None
    if isinstance(kind, tuple):
        if kind[0] == "list":
            return [conform(v, kind[1]) for v in value] if isinstance(value, list) else None
        return {n: conform(value.get(n), k) for n, k in kind[1]} if isinstance(value, dict) else None
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return value
