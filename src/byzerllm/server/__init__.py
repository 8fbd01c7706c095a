"""The OpenAI-compatible server (``byzerllm serve``) and Byzer-LLM's serving classes
(``openai_serving``). ``create_app`` is imported on first use, so the serving classes need neither
FastAPI nor the metrics library."""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
