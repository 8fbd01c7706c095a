"""Byzer-LLM's ``serving_completion`` module (a re-export)."""

from .....server.openai_serving import (
    OpenAIServingCompletion,
)

__all__ = ["OpenAIServingCompletion"]
