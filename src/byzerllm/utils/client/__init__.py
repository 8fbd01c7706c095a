"""``from byzerllm.utils.client import ByzerLLM, LLMRequest, InferBackend, Templates`` as in the
Byzer-LLM README; these are re-exports of the package's public types."""

from ...client import ByzerLLM, Template, Templates
from ...types import InferBackend, LLMRequest, LLMResponse, SingleOutputMeta

__all__ = ["ByzerLLM", "InferBackend", "LLMRequest", "LLMResponse", "SingleOutputMeta", "Template", "Templates"]
