"""``byzerllm.utils.str2model`` of Byzer-LLM (the logic is in ``byzerllm.structured.text_to_model``)."""

from ..structured.text_to_model import ModelTextError, to_model

__all__ = ["ModelTextError", "to_model"]
