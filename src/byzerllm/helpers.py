"""Small helpers that Byzer-LLM's users import from ``byzerllm.utils``."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any


def random_uuid() -> str:
    """A random 32-character hexadecimal id (UUID4)."""
    return uuid.uuid4().hex


def generate_str_md5(s: str) -> str:
    """The MD5 digest of ``s`` (UTF-8) as 32 hexadecimal characters; a cache key, not a security hash."""
    return hashlib.md5(s.encode("utf-8")).hexdigest()


def print_flush(*args: Any, **kwargs: Any) -> None:
    """``print`` that flushes at once."""
    print(*args, **kwargs, flush=True)
