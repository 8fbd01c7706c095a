"""Docstring templates of prompt functions: compiled once, rendered per call.

Attachments (``ImagePath``, ``AudioPath``, loaded images and audio) render as placeholders that
``to_content`` turns into OpenAI content parts around the text.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import jinja2
import jinja2.meta

from ..errors import InvalidRequestError
from ..multimodal import ATTACHMENT_TYPES, attachment_part

# Byzer-LLM renders with jinja2's defaults, where a variable not given renders empty; strict mode
# makes it an error instead
_ENV = jinja2.Environment(keep_trailing_newline=False, autoescape=False)
_STRICT_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
_PLACEHOLDER = "\x00attachment:{}\x00"
_SPLIT = re.compile("\x00attachment:(\\d+)\x00")


def render_string(source: str, **values: Any) -> str:
    """Render Jinja2 text ``source`` with ``values``; a variable not given renders empty (the
    real package's ``format_str_jinja2``)."""
    return _ENV.from_string(source).render(values)


def render_docstring(func: Any, **values: Any) -> str:
    """Render ``func``'s docstring (indentation removed) as a Jinja2 template with ``values``, as
    ``render_string`` does (the real package's ``format_prompt_jinja2``)."""
    return render_string(inspect.cleandoc(func.__doc__ or ""), **values)


class PromptTemplate:
    """A function's docstring as a Jinja2 template; ``variables`` are the names it uses. With
    ``strict``, rendering without a value for one of them is an error; else it renders empty."""

    def __init__(self, doc: str | None, owner: str, strict: bool = False) -> None:
        self.owner = owner
        self.strict = strict
        self.source = inspect.cleandoc(doc or "")
        env = _STRICT_ENV if strict else _ENV
        try:
            self.template = env.from_string(self.source)
        except jinja2.TemplateSyntaxError as exc:
            raise InvalidRequestError(
                f"the docstring of prompt function {owner!r} is not a valid template: {exc}", param="docstring"
            ) from None
        self.variables = frozenset(jinja2.meta.find_undeclared_variables(env.parse(self.source)))

    def render(self, values: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """The text with attachment placeholders, and the attachments' content parts.

        Raises ``InvalidRequestError`` naming a template variable that has no value (strict only).
        """
        missing = sorted(self.variables - values.keys()) if self.strict else []
        if missing:
            raise InvalidRequestError(
                f"template variable(s) {', '.join(missing)} of prompt function {self.owner!r} are neither "
                "arguments nor keys of the dict its body returns",
                param=missing[0],
            )
        parts: list[dict[str, Any]] = []
        if any(isinstance(v, ATTACHMENT_TYPES) for v in values.values()):
            values = dict(values)
            for key, value in values.items():
                part = attachment_part(value)
                if part is not None:
                    values[key] = _PLACEHOLDER.format(len(parts))
                    parts.append(part)
        try:
            return self.template.render(values), parts
        except jinja2.UndefinedError as exc:  # e.g. an attribute of an argument that is missing
            raise InvalidRequestError(f"prompt function {self.owner!r}: {exc.message}", param="template") from None


def to_content(text: str, parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Plain text, or a list of text and attachment parts in template order."""
    if not parts:
        return text
    content: list[dict[str, Any]] = []
    pieces = _SPLIT.split(text)
    for i, piece in enumerate(pieces):
        if i % 2:
            content.append(parts[int(piece)])
        elif piece.strip():
            content.append({"type": "text", "text": piece.strip()})
    return content


def printable(text: str, parts: list[dict[str, Any]]) -> str:
    """The rendered prompt for ``.prompt()``: attachments shown as ``<image>`` / ``<audio>``."""
    if not parts:
        return text
    return _SPLIT.sub(lambda m: "<image>" if parts[int(m.group(1))]["type"] == "image_url" else "<audio>", text)
