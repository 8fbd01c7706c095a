"""Clients: ``ByzerLLM`` (Ray runtime)."""

from .byzerllm import ByzerLLM
from .templates import Template, Templates

__all__ = ["ByzerLLM", "Template", "Templates"]
