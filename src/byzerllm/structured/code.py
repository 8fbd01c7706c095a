"""Code blocks in model output (``byzerllm.utils.client.code_utils`` of the Byzer-LLM guide).

The rules are Byzer-LLM's (``utils/client/code_utils.py``), edge cases included, because callers
index the result (``extract_code(answer)[-1][1]``) and rely on what it returns:

- a block opens with three backticks anywhere on a line (``run this: ```bash``), optionally followed
  by one word of letters, digits or ``_`` as its language, then a line end (``\\n`` or ``\\r\\n``);
- it ends at the first later line end followed by optional blanks and three backticks, so the code
  keeps its own indentation and inner ``\\r`` characters but not the last line end;
- a block needs at least one line between its fences: `````python\\n````` is no block;
- fences do not nest: an inner fence closes the outer block;
- tildes, and info strings such as ``c++`` or ``objective-c``, are not fences.
"""

from __future__ import annotations

import re
from typing import Any

# groups: the language (empty when the fence has none), the code
CODE_BLOCK_PATTERN = r"```[ \t]*(\w*)[ \t]*\r?\n(.*?)\r?\n[ \t]*```"
UNKNOWN = "unknown"
_WITH_INLINE = re.compile(CODE_BLOCK_PATTERN + r"|`([^`]+)`", re.DOTALL)


def content_text(content: str | list[dict[str, Any]] | None) -> str:
    """The text of a message ``content``: a string as is, ``None`` as ``""``, and a list of OpenAI
    parts as its ``text`` parts joined, each ``image_url`` part shown as ``<image>``.

    Raises ``TypeError`` for another type or a part that is not a dict, ``ValueError`` for a part
    of another type.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TypeError(f"content must be None, a str or a list of parts, not {type(content).__name__}")
    pieces: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            raise TypeError(f"each content part must be a dict, not {type(part).__name__}")
        kind = part.get("type")
        if kind == "text":
            pieces.append(part["text"])
        elif kind == "image_url":
            pieces.append("<image>")
        else:
            raise ValueError(f"unknown content part type {kind!r}")
    return "".join(pieces)


def extract_code(
    text: str | list[dict[str, Any]] | None,
    pattern: str = CODE_BLOCK_PATTERN,
    detect_single_line_code: bool = False,
) -> list[tuple[str, str]]:
    """``[(language, code)]`` for each fenced block of markdown ``text``, in order.

    ``text`` may also be a list of OpenAI content parts (see ``content_text``). The language is
    the fence's word (``""`` when absent); the code has no trailing line end. When there is no
    block, ``text`` is returned whole as ``[("unknown", text)]``.

    ``pattern`` replaces the block regex (matched with ``re.DOTALL``); ``re.findall`` gives the
    result, so it should have two groups. With ``detect_single_line_code=True`` the default
    block regex is used whatever ``pattern`` says, inline `` `code` `` spans are returned too as
    ``("", code)``, language and code are stripped of surrounding blanks, blocks with no code are
    left out, and no block gives ``[]`` instead of the ``"unknown"`` entry.
    """
    text = content_text(text)
    if not detect_single_line_code:
        return re.findall(pattern, text, flags=re.DOTALL) or [(UNKNOWN, text)]
    found: list[tuple[str, str]] = []
    for lang, code, inline in _WITH_INLINE.findall(text):
        if code:
            found.append((lang.strip(), code.strip()))
        elif inline:
            found.append(("", inline.strip()))
    return found
