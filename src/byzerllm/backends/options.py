"""Typed deploy options: each backend declares its ``infer_params`` as a pydantic model.

One declaration gives the checks (unknown keys, types, bounds, accepted values), the defaults, the
CLI's typing of ``--infer_params key=value`` text, and the option tables of ``byzerllm backends``
and the docs. Values may be given as text, as Byzer-LLM's SQL ``infer_params`` and the command line
give them: ``"4"`` for a number, ``"false"`` for a flag, JSON for a list or an object.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from ..errors import InvalidRequestError
from ..params import unknown_key_error


class BackendOptions(BaseModel):
    """Base of every backend's options: no option outside the declared fields."""

    model_config = ConfigDict(extra="forbid")


def _accepts_text(annotation: Any) -> bool:
    """Whether a field takes text (then a text value is kept as written)."""
    if annotation is str or any(isinstance(v, str) for v in literal_values(annotation)):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts_text(a) for a in typing.get_args(annotation))
    return False


def _from_text(field: FieldInfo, value: Any) -> Any:
    """A text value typed for ``field``: ``null``/``none`` is None where None is accepted, JSON for
    lists and objects; a number or a flag is left to pydantic's coercion."""
    if not isinstance(value, str) or _accepts_text(field.annotation):
        return value
    text = value.strip()
    if text.lower() in ("null", "none") and type(None) in typing.get_args(field.annotation):
        return None
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value  # pydantic names the field and the expected type
    return value


def validate_options(backend: str, model: type[BackendOptions], options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``model`` and merged over its defaults.

    Raises ``UnsupportedParameterError`` for an unknown key (naming the closest accepted one and
    listing all) and ``InvalidRequestError`` (``param`` the key) for a value of the wrong type, out
    of bounds or outside the accepted values.
    """
    fields = model.model_fields
    for key in options:
        if key not in fields:
            raise unknown_key_error(f"infer_param {key!r} is not known to the {backend} backend", key, fields)
    try:
        parsed = model.model_validate({k: _from_text(fields[k], v) for k, v in options.items()})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "infer_params"
        accepted = literal_values(fields[key].annotation) if key in fields else []
        raise InvalidRequestError(
            f"infer_param {key}={options.get(key)!r} is invalid for the {backend} backend: {err['msg']}"
            + (f"; accepted: {', '.join(map(str, accepted))}" if accepted else ""),
            param=key,
            **({"accepted": accepted} if accepted else {}),
        ) from None
    return parsed.model_dump()


def literal_values(annotation: Any) -> list[Any]:
    """The values a ``Literal[...]`` annotation (or an optional one) accepts; [] for other types."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [v for a in typing.get_args(annotation) for v in literal_values(a)]
    return []


def _type_name(annotation: Any) -> str:
    if values := literal_values(annotation):
        return " \\| ".join(map(str, values))
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return (text or str(annotation).replace("typing.", "")).replace("|", "\\|")


def _bounds(field: FieldInfo) -> str:
    out = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                out.append(f"{sign} {getattr(meta, attr)}")
    return ", ".join(out)


def options_table(model: type[BackendOptions]) -> str:
    """The options of ``model`` as a Markdown table: option, type, default, bounds, description."""
    rows = ["| option | type | default | bounds | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        default = "" if field.is_required() else json.dumps(field.get_default(call_default_factory=True))
        rows.append(
            f"| `{name}` | {_type_name(field.annotation)} | {default} | {_bounds(field)} | "
            f"{(field.description or '').replace('|', '/')} |"
        )
    return "\n".join(rows)
