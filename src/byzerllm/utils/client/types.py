"""``byzerllm.utils.client.types``: Byzer-LLM's module of the client's types (re-exports)."""

from ...client.templates import Template, Templates
from ...types import (
    EventCallback,
    EventCallbackResult,
    EventName,
    ExecuteCodeResponse,
    InferBackend,
    LLMClassResponse,
    LLMFunctionCallResponse,
    LLMHistoryItem,
    LLMRequest,
    LLMResponse,
    Role,
    SingleOutputMeta,
)

__all__ = [
    "EventCallback",
    "EventCallbackResult",
    "EventName",
    "ExecuteCodeResponse",
    "InferBackend",
    "LLMClassResponse",
    "LLMFunctionCallResponse",
    "LLMHistoryItem",
    "LLMRequest",
    "LLMResponse",
    "Role",
    "SingleOutputMeta",
    "Template",
    "Templates",
]
