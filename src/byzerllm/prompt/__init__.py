"""Prompt functions: ``@byzerllm.prompt``."""

from .function import PromptFunction, prompt

__all__ = ["PromptFunction", "prompt"]
