"""SaaS deployment types as data: ``saas_presets.json`` maps each ``saas/<name>`` type to the
backend that serves it and the deploy options it starts from (base URL, default model, what to
translate). Adding a provider that speaks a supported protocol is an edit of that file."""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

from ..errors import InvalidRequestError


@functools.cache
def presets() -> dict[str, dict[str, Any]]:
    """``{name: {"backend", "docs", "options"}}`` with aliases resolved."""
    raw = json.loads(files(__package__).joinpath("saas_presets.json").read_text(encoding="utf-8"))
    raw.pop("_comment", None)
    return {name: raw[entry["alias"]] if "alias" in entry else entry for name, entry in raw.items()}


def saas_types() -> list[str]:
    """The supported ``pretrained_model_type`` values of SaaS models, sorted."""
    return sorted(f"saas/{name}" for name in presets())


def resolve(pretrained_model_type: str) -> tuple[str, str]:
    """``(backend, preset name)`` of a ``saas/<name>`` type; raises ``InvalidRequestError``
    naming the field and listing the supported types."""
    name = pretrained_model_type.removeprefix("saas/")
    if not pretrained_model_type.startswith("saas/") or name not in presets():
        raise InvalidRequestError(
            f"pretrained_model_type {pretrained_model_type!r} is not supported; SaaS types: "
            f"{', '.join(saas_types())} (any OpenAI-compatible API through saas/openai and saas.base_url)",
            param="pretrained_model_type",
        )
    return presets()[name]["backend"], name


def preset_options(name: str | None) -> dict[str, Any]:
    """The deploy options preset ``name`` starts from ({} for None); raises
    ``InvalidRequestError`` for an unknown name."""
    if name is None:
        return {}
    if name not in presets():
        raise InvalidRequestError(
            f"saas.preset {name!r} is unknown; accepted: {', '.join(sorted(presets()))}", param="saas.preset"
        )
    return dict(presets()[name]["options"])
