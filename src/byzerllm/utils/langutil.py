"""``byzerllm.utils.langutil`` of Byzer-LLM: small helpers for async code, flags, ports and URLs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlparse

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)

_TRUE = ("yes", "true", "t", "1", "y", "on", "aye", "yea")
_FALSE = ("no", "false", "f", "0", "n", "off", "nay", "")


def asyncfy(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """An async version of ``func`` that calls it directly, in the event loop's thread (so a slow
    ``func`` blocks the loop; see ``asyncfy_with_semaphore``). A coroutine function is returned
    as is."""
    if inspect.iscoroutinefunction(func):
        return func

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return func(*args, **kwargs)

    return call


def asyncfy_with_semaphore(
    func: Callable[P, Any], semaphore: Any | None = None, timeout: float | None = None
) -> Callable[P, Awaitable[Any]]:
    """An async version of ``func`` that runs it in a worker thread (``asyncio.to_thread``), or
    awaits it when it is a coroutine function.

    ``semaphore`` (an ``asyncio.Semaphore`` or ``anyio.Semaphore``) bounds how many calls run at
    once; ``timeout`` (seconds; ``None`` or 0 for none) covers waiting for the semaphore and the
    call, and raises ``TimeoutError`` when it passes. A thread that times out is abandoned, not
    stopped: it runs to its end.
    """
    coroutine = inspect.iscoroutinefunction(func)

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> Any:
        deadline = asyncio.timeout(timeout) if timeout else contextlib.nullcontext()
        async with deadline:
            async with semaphore if semaphore is not None else contextlib.nullcontext():
                if coroutine:
                    return await func(*args, **kwargs)
                return await asyncio.to_thread(func, *args, **kwargs)

    return call


def is_valid_url(candidate_str: Any) -> bool:
    """True for a str with both a scheme and a host (``http://x``), False for anything else."""
    if not isinstance(candidate_str, str):
        return False
    parsed = urlparse(candidate_str)
    return bool(parsed.scheme) and bool(parsed.netloc)


def find_available_port(port: int | None = None) -> int:
    """A free TCP port: with no ``port``, one the OS picks; else the first of ``port``,
    ``port + 1``, ... on which nothing on localhost accepts connections."""
    if port is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            return s.getsockname()[1]
    while _occupied(port):
        logger.info("port %d is in use, trying %d", port, port + 1)
        port += 1
    return port


def _occupied(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("localhost", port)) == 0


def to_bool(s: str) -> bool:
    """``True`` for yes/true/t/1/y/on/aye/yea, ``False`` for no/false/f/0/n/off/nay and ``""``
    (any case). Raises ``TypeError`` for a non-str and ``ValueError`` for another word."""
    if not isinstance(s, str):
        raise TypeError(f"Expected a string, got {type(s)}")
    word = s.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"Invalid boolean value: {word}. Valid true values: {_TRUE}. Valid false values: {_FALSE}.")
