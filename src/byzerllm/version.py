"""The package version (``byzerllm.version.__version__``, Byzer-LLM's path)."""

__version__ = "0.1.0"
