"""``byzerllm.utils.client.code_utils`` of the Byzer-LLM guide."""

from ...structured.code import extract_code

__all__ = ["extract_code"]
