"""Text as the document loaders extract it, made comparable across extractors.

What pypdf (7.1) makes of the Chinese PDF (measured on debian-reference-zh-cn 2.100):

- The text is readable and in reading order: 249 of 251 pages have text (pages 1-2, the cover,
  have none), ~103k CJK characters in all, no mojibake. Tables come out one row per line
  ("命令 说明" then "pwd 显示当前/工作目录的名称").
- pypdf puts a line break where the PDF wraps a line, also in the middle of a Chinese word
  (~1400 CJK-newline-CJK joins in the book, e.g. "独立登\\n录账户"), and a space where a table
  cell wraps (~1100 CJK-space-CJK joins, e.g. "必 须存在"). Spacing around Latin words is not
  kept as typeset either: "类 VT100字符控制台" (space before, none after), and cross references
  come out with double spaces ("参见第  1.1.4  节"). ``normalize_text`` therefore drops every
  whitespace run next to a CJK character or CJK punctuation and collapses the rest to one space.
- Spaces between Latin words are sometimes lost ("MidnightCommander", "DomainNameSystem"), and
  some get added after "=" or "(" in commands ("LANG= fr_FR.UTF-8", "ALL=( ALL)"): full-text search
  for multi-word English phrases or exact command lines on this PDF can miss; single words work.
- Straight quotes in commands come out as typographic ones (”penguin ALL...”).
- PDF page numbers are not the printed ones: the printed page "23/ 223" is PDF page 51 (roman-numbered
  front matter first). Positions here are 1-based PDF page indexes.
- Extracting all pages takes ~10 s on one core. pypdf logs "fontTools is required ..." for a TeX
  math font (CMMI9) that only draws a minus sign; the Chinese text does not depend on it.
"""

from __future__ import annotations

import os
import re

# CJK ideographs, CJK symbols and punctuation, full-width forms
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_SPACE_NEAR_CJK = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Text with whitespace made comparable across extractors: whitespace next to a CJK character
    or CJK punctuation is removed, any other whitespace run becomes one space.

    PDF text extraction splits Chinese words with line breaks and spaces where lines wrap (see the
    module docstring); after this both the page text and a phrase from it compare equal.
    """
    return _SPACES.sub(" ", _SPACE_NEAR_CJK.sub("", text)).strip()


def pdf_page_texts(path: str | os.PathLike[str]) -> list[str]:
    """The extracted text of every page of the PDF at ``path``, in page order (index 0 is page 1),
    as pypdf returns it (not normalised). ~10 s for the 251-page Debian Reference."""
    from pypdf import PdfReader  # extra "rag"

    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]
