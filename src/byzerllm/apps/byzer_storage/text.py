"""Text for BM25 full-text search: Chinese word segmentation with jieba.

FTS5's ``unicode61`` tokenizer splits on spaces and punctuation, so a run of Chinese characters
would be one token and a word inside it could never match. Runs of CJK characters are therefore
segmented by jieba's search mode (``cut_for_search``: the words and the shorter words inside long
ones) before indexing and at query time; other text is left for the tokenizer as it is.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
WORD = re.compile(r"\w+")
MAX_QUERY_TERMS = 64


@functools.cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()  # loads the dictionary once (~0.5 s)
    return jieba


def segment(text: str) -> str:
    """``text`` with each run of Chinese characters replaced by its jieba words joined by spaces;
    other characters unchanged. ``segment("使用向量数据库")`` -> ``"使用 向量 数据 数据库"``."""
    if not CJK_RUN.search(text):
        return text
    jieba = _jieba()
    return CJK_RUN.sub(lambda m: " " + " ".join(w for w in jieba.cut_for_search(m.group(0)) if w.strip()) + " ", text)


def query_terms(text: str) -> list[str]:
    """The distinct search terms of a query (segmented like indexed text, lower-cased), at most
    ``MAX_QUERY_TERMS`` of them, in order of appearance."""
    seen: dict[str, None] = {}
    for term in WORD.findall(segment(text).lower()):
        seen.setdefault(term, None)
    return list(seen)[:MAX_QUERY_TERMS]


def fts5_match(terms: list[str], columns: list[str], op: str = "OR") -> str:
    """An FTS5 MATCH expression: any of ``terms`` (``op="OR"``, ranked by BM25 as a Lucene query
    is) or all of them (``"AND"``), restricted to ``columns``. Terms are quoted, so FTS5 operators
    in user text are plain words."""
    body = f" {op} ".join('"' + t.replace('"', '""') + '"' for t in terms)
    return "{" + " ".join(columns) + "}: (" + body + ")" if columns else body


def affordable_terms(terms: list[str], df: Callable[[list[str]], int], budget: int) -> tuple[list[str], str]:
    """The query terms to rank with, and how to join them (``"OR"`` / ``"AND"``).

    ``df(terms)`` counts the documents holding all of ``terms`` (an engine may stop counting past
    ``budget + 1``). Scoring BM25 costs about the same per matching document in every engine, so
    a common word ("the", "的") in most chunks makes a query slow. When the terms' document
    counts add up to more than ``budget``, terms are kept rarest first within the budget (the idea
    of Elasticsearch's ``cutoff_frequency``: frequent terms carry little BM25 weight). When even
    the rarest term is over the budget, the documents holding all the terms are ranked if they
    fit in it; else the rarest term alone. Within the budget every term is scored: plain BM25.
    ``budget <= 0``: every term, OR-ed. Terms no document holds are left out.
    """
    if len(terms) <= 1 or budget <= 0:
        return terms, "OR"
    counts = {t: df([t]) for t in terms}
    terms = [t for t in terms if counts[t] > 0]
    if sum(counts.values()) <= budget:
        return terms, "OR"
    terms.sort(key=lambda t: counts[t])
    if counts[terms[0]] > budget:
        if len(terms) > 1 and 0 < df(terms) <= budget:
            return terms, "AND"
        return terms[:1], "OR"
    kept, total = [], 0
    for t in terms:
        if total + counts[t] > budget:
            break
        kept.append(t)
        total += counts[t]
    return kept, "OR"
