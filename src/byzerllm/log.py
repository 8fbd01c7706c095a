"""``init_logger(name)``: Byzer-LLM's logger helper. Loggers live under ``byzerllm``; the first call
gives that root a handler writing ``[LEVEL][time][file:line] - message`` lines to stderr at INFO,
unless the environment sets ``BYZERLLM_CONFIGURE_LOGGING=0`` (Byzer-LLM's switch)."""

from __future__ import annotations

import logging
import os

_FORMAT = "[%(levelname)s][%(asctime)s][%(filename)s:%(lineno)d] - %(message)s"


def init_logger(name: str) -> logging.Logger:
    """The logger ``name`` (placed under ``byzerllm`` when it is not already)."""
    root = logging.getLogger("byzerllm")
    if os.environ.get("BYZERLLM_CONFIGURE_LOGGING", "1") != "0" and not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logging.getLogger(name if name == "byzerllm" or name.startswith("byzerllm.") else f"byzerllm.{name}")
