"""Byzer-LLM's ``serving_chat`` module (a re-export)."""

from .....server.openai_serving import (
    OpenAIServingChat,
)

__all__ = ["OpenAIServingChat"]
