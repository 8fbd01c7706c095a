"""``byzerllm.utils.client.simple_byzerllm_client``: Byzer-LLM's module path of ``SimpleByzerLLM``
(a re-export)."""

from ...client import SimpleByzerLLM

__all__ = ["SimpleByzerLLM"]
