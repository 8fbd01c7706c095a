"""``byzerllm.utils.client``: the import path of the Byzer-LLM documents and of its users' code
(``from byzerllm.utils.client import ByzerLLM, EventName, ...``); re-exports of the one client."""

from ...client import ByzerLLM, SimpleByzerLLM, Template, Templates
from . import code_utils, types
from .types import (
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
    "ByzerLLM",
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
    "SimpleByzerLLM",
    "SingleOutputMeta",
    "Template",
    "Templates",
    "code_utils",
    "types",
]
