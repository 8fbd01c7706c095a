"""``byzerllm.utils.types``: Byzer-LLM's path of ``SingleOutputMeta`` (a re-export)."""

from ..types import SingleOutputMeta

__all__ = ["SingleOutputMeta"]
