"""``byzerllm.utils.client.code_utils`` of the Byzer-LLM guide (the logic is in ``byzerllm.structured.code``)."""

from ...structured.code import CODE_BLOCK_PATTERN, UNKNOWN, extract_code
from ...structured.code import content_text as content_str

__all__ = ["CODE_BLOCK_PATTERN", "UNKNOWN", "content_str", "extract_code"]
