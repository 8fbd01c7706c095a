"""Byzer-LLM's ``serving_engine`` module (a re-export)."""

from .....server.openai_serving import (
    OpenAIServing,
)

__all__ = ["OpenAIServing"]
