"""The fixed retrieval evaluation sets in tests/data/eval/: schema, size, and every answer location
re-checked against the real corpus (fetched with fetch_corpus; ~20 s, most of it PDF text extraction).

Each line is one question: {"id", "question", "source", "page" (PDF, 1-based) or "heading" (markdown,
as written after the # marks), "answer_contains": [strings found in that page/section], "style"}.
"style" says how the question relates to the text: "natural" (a user's question), "paraphrase" (worded
unlike the text, for vector retrieval) or "keyword" (a few search terms, for full-text retrieval).

A location is the one page or section that answers the question best. The Node.js docs repeat some
text in sibling sections (``fs.mkdir`` and ``fsPromises.mkdir``, ``exec`` and ``execSync``), so recall
measured against the single gold location is a lower bound there.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from ..corpora import fetch_corpus, markdown_section, normalize_text, pdf_page_texts

EVAL_DIR = Path(__file__).resolve().parent.parent / "data" / "eval"
SETS = {  # eval file -> (corpus name, location field, question language pattern)
    "debian_reference_zh.jsonl": ("debian-reference-zh", "page", re.compile(r"[\u4e00-\u9fff]")),
    "nodejs_api.jsonl": ("nodejs-api", "heading", re.compile(r"^[\x20-\x7e]+$")),
}
STYLES = {"natural", "paraphrase", "keyword"}
MIN_QUESTIONS = 25


def load(file: str) -> list[dict]:
    with (EVAL_DIR / file).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cache
def page_texts(pdf: Path) -> tuple[str, ...]:
    return tuple(normalize_text(t) for t in pdf_page_texts(pdf))


@pytest.mark.parametrize("file", sorted(SETS))
def test_schema(file: str) -> None:
    _, where, language = SETS[file]
    items = load(file)
    assert len(items) >= MIN_QUESTIONS
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids), "ids must be unique"
    for item in items:
        assert set(item) == {"id", "question", "source", where, "answer_contains", "style"}, item["id"]
        assert isinstance(item["question"], str) and language.search(item["question"]), item["id"]
        assert isinstance(item["source"], str) and "/" not in item["source"], item["id"]
        assert item["style"] in STYLES, item["id"]
        keys = item["answer_contains"]
        assert isinstance(keys, list) and keys and all(isinstance(k, str) and k.strip() for k in keys), item["id"]
        if where == "page":
            assert isinstance(item["page"], int) and item["page"] >= 1, item["id"]
        else:
            assert isinstance(item["heading"], str) and not item["heading"].startswith("#"), item["id"]
    # both retrieval methods get questions that favour them, and answers are spread out
    assert {item["style"] for item in items} == STYLES
    assert len({(item["source"], item[where]) for item in items}) >= MIN_QUESTIONS
    if where == "heading":
        assert len({item["source"] for item in items}) >= 20


@pytest.mark.parametrize("file", sorted(SETS))
def test_questions_are_not_copied_from_the_answer(file: str) -> None:
    for item in load(file):
        if item["style"] == "keyword":  # search terms are meant to be words of the text
            continue
        question = normalize_text(item["question"]).lower()
        for key in item["answer_contains"]:
            key = normalize_text(key).lower()
            if len(key) >= 12:  # a long answer string inside the question gives the answer away
                assert key not in question, (item["id"], key)


def test_debian_reference_answers_are_on_their_pages() -> None:
    folder = fetch_corpus("debian-reference-zh")
    wrong = []
    for item in load("debian_reference_zh.jsonl"):
        pages = page_texts(folder / item["source"])
        assert item["page"] <= len(pages), item["id"]
        text = pages[item["page"] - 1]
        missing = [key for key in item["answer_contains"] if normalize_text(key) not in text]
        wrong += [(item["id"], item["page"], key) for key in missing]
    assert not wrong, f"answer strings not found on their page: {wrong}"


def test_nodejs_answers_are_in_their_sections() -> None:
    folder = fetch_corpus("nodejs-api")
    wrong = []
    for item in load("nodejs_api.jsonl"):
        doc = (folder / item["source"]).read_text(encoding="utf-8")
        section = normalize_text(markdown_section(doc, item["heading"]))  # KeyError/ValueError: bad heading
        missing = [key for key in item["answer_contains"] if normalize_text(key) not in section]
        wrong += [(item["id"], item["heading"], key) for key in missing]
    assert not wrong, f"answer strings not found in their sections: {wrong}"
