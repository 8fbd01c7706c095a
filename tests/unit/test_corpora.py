"""fetch_corpus against the real Debian registry (~2 MB + ~4 MB, a few seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from byzerllm.errors import InvalidRequestError

from .. import corpora
from ..corpora import CORPORA, MANIFEST, Corpus, CorpusFetchError, fetch_corpus


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    for name in CORPORA:
        fetch_corpus(name, dest=root)
    return root


def test_nodejs_api_is_64_markdown_files(cache: Path) -> None:
    folder = cache / "nodejs-api"
    md = sorted(p.name for p in folder.glob("*.md"))
    assert len(md) == 64
    assert {"fs.md", "http.md", "stream.md", "index.md", "synopsis.md"} <= set(md)
    assert not list(folder.glob("*.gz"))
    assert (folder / "fs.md").read_text(encoding="utf-8").startswith("# File system")
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["name"] == "nodejs-api" and manifest["package"] == "nodejs-doc"
    assert manifest["version"] and manifest["files"] == md


def test_debian_reference_is_one_pdf(cache: Path) -> None:
    folder = cache / "debian-reference-zh"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "debian-reference.zh-cn.pdf"]
    assert (folder / "debian-reference.zh-cn.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in cache.iterdir() if ".partial-" in p.name]


def test_second_call_uses_the_cache_without_apt(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb: a download attempt would fail
    start = time.monotonic()
    assert fetch_corpus("nodejs-api", dest=cache) == cache / "nodejs-api"
    assert time.monotonic() - start < 0.5


def test_default_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BYZERLLM_CORPORA_DIR", str(tmp_path))
    assert corpora.corpora_dir() == tmp_path
    done = tmp_path / "nodejs-api"
    done.mkdir()
    (done / MANIFEST).write_text("{}", encoding="utf-8")
    assert fetch_corpus("nodejs-api") == done
    monkeypatch.delenv("BYZERLLM_CORPORA_DIR")
    assert corpora.corpora_dir() == Path.home() / ".cache" / "byzerllm" / "corpora"


def test_unknown_name_lists_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as err:
        fetch_corpus("debian-reference", dest=tmp_path)
    assert err.value.param == "name"
    assert err.value.accepted == ["debian-reference-zh", "nodejs-api"]
    assert "nodejs-api" in str(err.value)


def test_missing_apt_get_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(CorpusFetchError, match="apt-get not found") as err:
        fetch_corpus("nodejs-api", dest=tmp_path)
    assert err.value.package == "nodejs-doc"
    assert not (tmp_path / "nodejs-api").exists()


def test_failed_download_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = Corpus(name="nodejs-api", package="byzerllm-no-such-package", members=("*",), description="")
    monkeypatch.setitem(CORPORA, "nodejs-api", missing)
    with pytest.raises(CorpusFetchError, match="apt-get download byzerllm-no-such-package failed") as err:
        fetch_corpus("nodejs-api", dest=tmp_path)
    assert err.value.package == "byzerllm-no-such-package"
    assert list(tmp_path.iterdir()) == []


def test_unfinished_folder_is_never_taken_as_complete(tmp_path: Path) -> None:
    stale = tmp_path / "debian-reference-zh"
    stale.mkdir()
    (stale / "debian-reference.zh-cn.pdf").write_bytes(b"%PDF- cut short")
    old_partial = tmp_path / ".debian-reference-zh.partial-killed"
    old_partial.mkdir()
    os.utime(old_partial, (time.time() - 7200, time.time() - 7200))

    folder = fetch_corpus("debian-reference-zh", dest=tmp_path)

    assert (folder / MANIFEST).is_file()
    assert (folder / "debian-reference.zh-cn.pdf").stat().st_size > 1_000_000
    assert not old_partial.exists()


def test_module_entry_prints_the_folder(cache: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.corpora", "debian-reference-zh", "--dest", str(cache)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == str(cache / "debian-reference-zh")


def test_normalize_text_joins_wrapped_chinese() -> None:
    assert corpora.normalize_text("必 须存在\n“bar”目录") == corpora.normalize_text("必须存在“bar”目录")
    assert corpora.normalize_text("参见第  1.1.4  节") == "参见第1.1.4节"
    assert corpora.normalize_text("ls  -la\n foo") == "ls -la foo"


def test_markdown_section_stops_at_a_sibling_heading() -> None:
    doc = "# A\n\nintro\n\n## `b()`\n\nbee\n\n```bash\n# not a heading\n```\n\n### c\n\nsee\n\n## d\n\ndee\n"
    section = corpora.markdown_section(doc, "`b()`")
    assert "bee" in section and "see" in section and "# not a heading" in section
    assert "dee" not in section and "intro" not in section
    with pytest.raises(KeyError):
        corpora.markdown_section(doc, "b()")
    with pytest.raises(ValueError, match="2 headings"):
        corpora.markdown_section(doc + "\n## d\n", "d")
