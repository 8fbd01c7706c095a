"""Backends, registered by name through the ``byzerllm.backends`` entry-point group.

The built-in backends are registered in ``pyproject.toml`` exactly like a third-party one, and
imported only when used, so a SaaS-only install never imports llama.cpp.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import BackendNotFoundError
from .base import Backend

GROUP = "byzerllm.backends"
# engines Byzer-LLM deploys on (``InferBackend``) that have no backend here yet
PLANNED = {"ray/deepspeed": "DeepSpeed"}
# Byzer-LLM's names of engines that run here without Ray's prefix
ALIASES = {"ray/vllm": "vllm"}


def available_backends() -> list[str]:
    """Names of the installed backends."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``.

    Raises ``BackendNotFoundError`` listing the installed backends when ``name`` is unknown, or
    naming the missing package when its module cannot be imported.
    """
    name = ALIASES.get(name, name)
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        what = f"the {PLANNED[name]} engine has no backend yet" if name in PLANNED else "unknown infer_backend"
        raise BackendNotFoundError(
            f"{what} ({name!r}); installed: {', '.join(available_backends()) or 'none'}",
            param="infer_backend",
            available=available_backends(),
        )
    try:
        return matches[0].load()
    except ImportError as exc:
        raise BackendNotFoundError(
            f"backend {name!r} is registered but cannot be imported ({exc}); install its extra, "
            f"e.g. pip install 'byzerllm[{name.replace('_', '-')}]'",
            param="infer_backend",
            available=available_backends(),
        ) from None


def create_backend(name: str, model_path: str, options: dict) -> Backend:
    """Build backend ``name`` for ``model_path`` with deploy ``options`` (prefixes stripped)."""
    return get_backend_class(name)(model_path, options)


__all__ = ["Backend", "available_backends", "create_backend", "get_backend_class"]
