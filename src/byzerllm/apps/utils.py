"""``byzerllm.apps.utils``: Byzer-LLM's path of ``TagExtractor`` (a re-export)."""

from ..multimodal import TagExtractor

__all__ = ["TagExtractor"]
