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
