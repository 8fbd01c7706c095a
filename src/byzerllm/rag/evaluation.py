"""Retrieval evaluation on a fixed question set: recall@k of an index per retrieval mode.

An evaluation set is JSON lines, one question each: ``question``, ``source`` (file), and ``page``
(PDF, 1-based) or ``heading`` (the markdown heading text of the answering section). A retrieved
chunk answers a question when it comes from that file and that page, or from that section or one of
its subsections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .index import DocumentIndex, Hit


def load_eval_set(path: str | Path) -> list[dict[str, Any]]:
    """The questions of a JSON-lines evaluation set."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def answers(hit: Hit, item: dict[str, Any]) -> bool:
    """Whether ``hit`` is at the place that answers ``item``."""
    if hit.source != item["source"]:
        return False
    if item.get("page") is not None:
        return hit.page == item["page"]
    return item["heading"].strip() in hit.heading.split(" > ")


def recall_at_k(
    index: DocumentIndex, items: list[dict[str, Any]], k: int = 5, mode: str = "hybrid", rerank_model: str | None = None
) -> dict[str, Any]:
    """Share of questions with an answering chunk in the top ``k`` (``recall``), and the ids missed."""
    missed = [
        item["id"]
        for item in items
        if not any(answers(h, item) for h in index.search(item["question"], k, mode, rerank_model))
    ]
    return {"mode": mode, "k": k, "questions": len(items), "recall": 1 - len(missed) / len(items), "missed": missed}
