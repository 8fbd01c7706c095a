"""Prompt functions: ``@byzerllm.prompt``."""

from .function import AsyncPromptFunction, AsyncStream, BasePromptFunction, PromptDecorator, PromptFunction, prompt

__all__ = ["AsyncPromptFunction", "AsyncStream", "BasePromptFunction", "PromptDecorator", "PromptFunction", "prompt"]
