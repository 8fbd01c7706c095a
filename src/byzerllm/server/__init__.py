"""The OpenAI-compatible server (``byzerllm serve``)."""

from .app import create_app

__all__ = ["create_app"]
