"""The OpenAI-compatible server (``byzerllm serve``) and Byzer-LLM's serving classes
(``openai_serving``). ``create_app`` is imported on first use, so the serving classes need neither
FastAPI nor the metrics library.

Layout: ``app`` builds the app (guard, error handlers, OpenAPI schema); ``routes`` holds one router
per endpoint family; ``schemas`` the request models, ``responses`` the response models (shared with
``openai_serving``); ``chat_client`` the ``ChatClient`` protocol, all the server needs of a client;
``state`` the per-app state, ``errors`` the error bodies, ``metrics`` the Prometheus metrics."""

from typing import Any

from .chat_client import ChatClient

__all__ = ["ChatClient", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
