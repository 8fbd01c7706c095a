"""``byzerllm.utils``: the import path Byzer-LLM's users take these helpers from (re-exports)."""

from ..helpers import generate_str_md5, print_flush, random_uuid
from ..prompt.template import render_docstring as format_prompt_jinja2
from ..prompt.template import render_string as format_str_jinja2
from ..types import SingleOutputMeta

__all__ = [
    "SingleOutputMeta",
    "format_prompt_jinja2",
    "format_str_jinja2",
    "generate_str_md5",
    "print_flush",
    "random_uuid",
]
