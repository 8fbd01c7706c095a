"""Clients: ``ByzerLLM`` (Ray runtime) and ``SimpleByzerLLM`` (in-process runtime)."""

from .byzerllm import ByzerLLM
from .simple import SimpleByzerLLM
from .templates import Template, Templates

__all__ = ["ByzerLLM", "SimpleByzerLLM", "Template", "Templates"]
