"""byzerllm: deploy models as worker pools on Ray and use every one through one client API."""

from . import errors
from .backends.models import DEFAULT_CHAT_MODEL
from .client import ByzerLLM, SimpleByzerLLM, Template, Templates
from .multimodal import Audio, Image
from .prompt import prompt
from .prompt.template import render_string as format_str_jinja2
from .runtime.cluster import connect_cluster
from .types import InferBackend, LLMRequest, LLMResponse, MetaHolder, SingleOutputMeta
from .version import __version__

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "Audio",
    "ByzerLLM",
    "Image",
    "InferBackend",
    "LLMRequest",
    "LLMResponse",
    "MetaHolder",
    "SimpleByzerLLM",
    "SingleOutputMeta",
    "Template",
    "Templates",
    "__version__",
    "connect_cluster",
    "errors",
    "format_str_jinja2",
    "prompt",
]
