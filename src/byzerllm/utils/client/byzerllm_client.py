"""``byzerllm.utils.client.byzerllm_client``: Byzer-LLM's module path of ``ByzerLLM`` (a re-export)."""

from ...client import ByzerLLM

__all__ = ["ByzerLLM"]
