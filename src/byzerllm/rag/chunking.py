"""Split sections into chunks that keep their citation and end at sentence boundaries.

A chunk never crosses a section (a heading or a PDF page), so its citation is exact. Inside a
section, text is cut at paragraph breaks, then at sentence ends (Chinese 。！？； and Latin .!?;
followed by a space), then, for a sentence longer than a chunk, at the size limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .loaders import Section

_PARAGRAPHS = re.compile(r"\n\s*\n")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def size(text: str) -> int:
    """A chunk's size in characters with each CJK character counted twice: a CJK character is
    ~0.6 tokens for multilingual-e5's tokenizer, four Latin characters ~1 token, so one budget fits
    both (1000 = ~250 English tokens or ~300 Chinese ones)."""
    return len(text) + len(_CJK.findall(text))


_SENTENCE_END = re.compile(r"(?<=[。！？；])|(?<=[.!?;])\s+")


@dataclass
class Chunk:
    """One piece of a section: ``text`` (what is shown to the model), ``section`` (its place),
    ``index`` (its position in the file, from 0)."""

    text: str
    section: Section
    index: int


def _units(text: str, max_chars: int) -> list[str]:
    units: list[str] = []
    for para in _PARAGRAPHS.split(text):
        para = para.strip()
        if not para:
            continue
        if size(para) <= max_chars:
            units.append(para)
            continue
        for sentence in _SENTENCE_END.split(para):
            sentence = sentence.strip()
            while size(sentence) > max_chars:
                cut, used = 0, 0
                while used + size(sentence[cut]) <= max_chars:
                    used += size(sentence[cut])
                    cut += 1
                units.append(sentence[:cut])
                sentence = sentence[cut:]
            if sentence:
                units.append(sentence)
    return units


def chunk_sections(sections: list[Section], max_chars: int = 1000, overlap_units: int = 1) -> list[Chunk]:
    """Chunks of at most ``max_chars`` (measured by ``size``; default 1000, within MiniLM's 256
    tokens and e5's 512), packing whole paragraphs and sentences. The last
    ``overlap_units`` sentences of a chunk start the next one of the same section, so an answer cut
    at a boundary is whole in one of them."""
    chunks: list[Chunk] = []
    for section in sections:
        units = _units(section.text, max_chars)
        start = 0
        while start < len(units):
            end, used = start, 0
            while end < len(units) and (end == start or used + size(units[end]) + 1 <= max_chars):
                used += size(units[end]) + 1
                end += 1
            chunks.append(Chunk("\n".join(units[start:end]), section, len(chunks)))
            if end >= len(units):
                break
            start = max(end - overlap_units, start + 1)
    return chunks
