"""Document loaders and the chunker: sections keep their citation, chunks end at sentences."""

from __future__ import annotations

import pytest

from byzerllm.errors import InvalidRequestError
from byzerllm.rag.chunking import chunk_sections, size
from byzerllm.rag.loaders import Section, iter_documents, load

MD = """# Guide

Intro text.

## Install

Run `pip install x`.

```bash
# not a heading
echo hi
```

### Options

Use --fast.

## Usage

Call it.
"""


def test_markdown_sections_follow_headings_not_code_comments(tmp_path):
    (tmp_path / "guide.md").write_text(MD)
    sections = load(tmp_path / "guide.md", "guide.md")
    assert [s.headings for s in sections] == [
        ["Guide"],
        ["Guide", "Install"],
        ["Guide", "Install", "Options"],
        ["Guide", "Usage"],
    ]
    assert "# not a heading" in sections[1].text
    assert sections[2].citation() == "guide.md § Guide > Install > Options"


def test_html_and_docx_and_text_sections(tmp_path):
    (tmp_path / "a.html").write_text(
        "<html><head><style>p{}</style></head><body><nav>menu</nav><h1>Title</h1>"
        "<p>First <b>bold</b> para.</p><h2>Part</h2><ul><li>item one</li></ul>"
        "<script>var x;</script></body></html>"
    )
    html = load(tmp_path / "a.html", "a.html")
    assert [(s.headings, s.text) for s in html] == [(["Title"], "First bold para."), (["Title", "Part"], "item one")]

    import docx

    doc = docx.Document()
    doc.add_heading("Chapter", level=1)
    doc.add_paragraph("Body one.")
    doc.add_heading("Section", level=2)
    doc.add_paragraph("Body two.")
    doc.save(tmp_path / "b.docx")
    assert [(s.headings, s.text) for s in load(tmp_path / "b.docx", "b.docx")] == [
        (["Chapter"], "Body one."),
        (["Chapter", "Section"], "Body two."),
    ]

    (tmp_path / "c.txt").write_text("plain\n")
    assert load(tmp_path / "c.txt", "c.txt")[0].citation() == "c.txt"


def test_unsupported_files_and_missing_folders_are_named(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\0")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "h.md").write_text("# h")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "k.md").write_text("# k")
    assert [p.name for p in iter_documents(tmp_path)] == ["k.md"]
    with pytest.raises(InvalidRequestError, match="unsupported file type; accepted: .docx"):
        load(tmp_path / "x.bin", "x.bin")
    with pytest.raises(InvalidRequestError, match="source_dir"):
        list(iter_documents(tmp_path / "nope"))


def test_chunks_respect_chinese_sentence_ends_and_sections():
    zh = "。".join(f"第{i}句话讲的是软件包管理的一个细节" for i in range(60)) + "。"
    sections = [Section("a.pdf", zh, page=3), Section("a.pdf", "短页。", page=4)]
    chunks = chunk_sections(sections, max_chars=200)
    assert all(size(c.text) <= 200 for c in chunks) and size("软件a") == 5
    assert {c.section.page for c in chunks} == {3, 4}
    assert all(c.text.endswith("。") for c in chunks)  # cut at sentence ends only
    assert chunks[-1].text == "短页。"
    # consecutive chunks of a page overlap by one sentence
    first, second = chunks[0].text.splitlines(), chunks[1].text.splitlines()
    assert first[-1] == second[0]
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_a_sentence_longer_than_a_chunk_is_cut_at_the_limit():
    chunks = chunk_sections([Section("x.txt", "a" * 2500)], max_chars=1000)
    assert [len(c.text) for c in chunks] == [1000, 1000, 500]
    zh = chunk_sections([Section("x.txt", "软" * 1200)], max_chars=1000)
    assert [len(c.text) for c in zh] == [500, 500, 200]
