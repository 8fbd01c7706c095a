"""Code blocks in model output (``byzerllm.utils.client.code_utils`` of the Byzer-LLM guide)."""

from __future__ import annotations

import re

# an opening fence of 3+ backticks or tildes with an optional language, up to the same fence
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n(?P<code>.*?)^(?P=fence)[ \t]*$",
                    re.MULTILINE | re.DOTALL)


def extract_code(text: str) -> list[tuple[str, str]]:
    """``[(language, code)]`` for each fenced block of markdown ``text``, in order.

    The language is the fence's info word (``""`` when absent); the code has no trailing newline.
    When ``text`` has no fence at all, it is returned whole as ``[("unknown", text)]``, as in
    Byzer-LLM.
    """
    blocks = [(m.group("lang"), m.group("code").rstrip("\n")) for m in _FENCE.finditer(text)]
    return blocks or [("unknown", text)]
