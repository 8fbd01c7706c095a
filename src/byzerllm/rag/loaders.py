"""Document loaders: a file becomes ``Section``s, each with the place a citation points at.

PDF: one section per page (pypdf; pages are 1-based PDF page indexes). Markdown: one section per
heading (markdown-it-py, CommonMark; ``#`` lines in code blocks are not headings). HTML: one section
per ``h1``-``h6`` (BeautifulSoup; scripts, styles and navigation dropped). DOCX: one section per
``Heading N`` paragraph style (python-docx). TXT: one section.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidRequestError
from .text import normalize_text, pdf_page_texts

SUFFIXES = {
    ".pdf": "pdf",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
    ".txt": "text",
}


@dataclass
class Section:
    """A run of text and where it is: ``source`` (path relative to the source folder), ``page``
    (PDF, 1-based) and ``headings`` (the heading path, outermost first; markdown/HTML/DOCX)."""

    source: str
    text: str
    page: int | None = None
    headings: list[str] = field(default_factory=list)

    @property
    def heading(self) -> str:
        return " > ".join(self.headings)

    def citation(self) -> str:
        """``file p.12`` or ``file § Heading > Sub`` or ``file``."""
        if self.page is not None:
            return f"{self.source} p.{self.page}"
        return f"{self.source} § {self.heading}" if self.headings else self.source


def iter_documents(source_dir: str | os.PathLike) -> Iterator[Path]:
    """Supported files under ``source_dir`` (recursively, hidden folders skipped), in path order."""
    root = Path(source_dir)
    if not root.is_dir():
        raise InvalidRequestError(f"source_dir {str(root)!r} is not a folder", param="source_dir")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and path.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in rel.parts):
            yield path


def load(path: Path, source: str) -> list[Section]:
    """The sections of one file; ``source`` is the name citations use. Raises
    ``InvalidRequestError`` naming the accepted suffixes for an unsupported file."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidRequestError(
            f"{path.name}: unsupported file type; accepted: {', '.join(sorted(SUFFIXES))}", param="source_dir"
        )
    return {"pdf": _pdf, "markdown": _markdown, "html": _html, "docx": _docx, "text": _text}[kind](path, source)


def _pdf(path: Path, source: str) -> list[Section]:
    # pypdf warns about a TeX math font it cannot fully decode; the text does not depend on it
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    # pypdf breaks lines inside Chinese words; normalize_text rejoins them (see text.py)
    return [
        Section(source, normalize_text(t), page=i) for i, t in enumerate(pdf_page_texts(path), 1) if normalize_text(t)
    ]


def _headed(source: str, blocks: list[tuple[int, str]]) -> list[Section]:
    """Sections from ``(level, text)`` blocks where level > 0 marks a heading."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> None:
        text = "\n\n".join(b for b in body if b.strip()).strip()
        if text:
            sections.append(Section(source, text, headings=[h for _, h in path]))
        body.clear()

    for level, text in blocks:
        if level:
            flush()
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, text.strip()))
        else:
            body.append(text)
    flush()
    return sections


def _markdown(path: Path, source: str) -> list[Section]:
    from markdown_it import MarkdownIt

    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    heads = [
        (int(t.tag[1:]), t.map[0], t.map[1], tokens[i + 1].content)
        for i, t in enumerate(tokens)
        if t.type == "heading_open" and t.map
    ]
    blocks: list[tuple[int, str]] = []
    pos = 0
    for level, start, end, title in heads:
        blocks.append((0, "\n".join(lines[pos:start])))
        blocks.append((level, title))
        pos = end
    blocks.append((0, "\n".join(lines[pos:])))
    return _headed(source, blocks)


def _html(path: Path, source: str) -> list[Section]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript"]):
        tag.decompose()
    blocks: list[tuple[int, str]] = []
    root = soup.body or soup
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "pre", "li", "td", "dt", "dd"]):
        if el.name[0] == "h" and el.name[1:].isdigit():
            blocks.append((int(el.name[1]), el.get_text(" ", strip=True)))
        elif not el.find_parent(["p", "pre", "li", "td", "dd"]):  # nested blocks are in their parent's text
            blocks.append((0, el.get_text("\n" if el.name == "pre" else " ", strip=el.name != "pre")))
    return _headed(source, blocks)


def _docx(path: Path, source: str) -> list[Section]:
    import docx

    blocks: list[tuple[int, str]] = []
    for para in docx.Document(str(path)).paragraphs:
        style = para.style.name if para.style is not None else ""
        level = int(style.split()[-1]) if style.startswith("Heading ") and style.split()[-1].isdigit() else 0
        level = 1 if style == "Title" else level
        blocks.append((level, para.text))
    return _headed(source, blocks)


def _text(path: Path, source: str) -> list[Section]:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    return [Section(source, text)] if text else []
