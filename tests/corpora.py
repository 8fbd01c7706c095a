"""Real documents for retrieval tests and benchmarks, fetched from Debian packages.

Two corpora, each a flat folder of files:

- ``debian-reference-zh``: the Chinese Debian Reference, one PDF ``debian-reference.zh-cn.pdf``
  (251 pages, ~100k Chinese characters) from the Debian package ``debian-reference-zh-cn``.
- ``nodejs-api``: the Node.js API docs, 64 markdown files (``fs.md``, ``http.md``, ...; ~440k words)
  from the Debian package ``nodejs-doc`` (``usr/share/doc/nodejs/api/``; 60 ship gzipped, 4 plain).

``fetch_corpus`` runs ``apt-get download`` (only the Debian registry is needed) and ``dpkg-deb -x``
in a temporary folder and moves the result into a cache folder in one rename, so a folder that
exists is complete. A hidden ``.corpus.json`` in it records the package, its version and the files.

Text positions (the evaluation sets in ``tests/data/eval/``) are checked with ``normalize_text``
and ``pdf_page_texts`` (``byzerllm.rag.text``, which the document loaders use too) and
``markdown_section`` from this module. This is a tool of the tests and benchmarks, not of the
package: ``python -m tests.corpora NAME`` from the repository's root.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from byzerllm.errors import ByzerLLMError, InvalidRequestError
from byzerllm.rag.text import normalize_text, pdf_page_texts

__all__ = [
    "CORPORA",
    "CorpusFetchError",
    "corpora_dir",
    "fetch_corpus",
    "markdown_section",
    "normalize_text",
    "pdf_page_texts",
]

MANIFEST = ".corpus.json"
_APT_TIMEOUT_S = 600
_STALE_PARTIAL_S = 3600


class CorpusFetchError(ByzerLLMError):
    """A corpus could not be downloaded or unpacked; ``package`` names the Debian package."""


@dataclass(frozen=True)
class Corpus:
    """Where a corpus comes from: a Debian ``package`` and the files taken from it.

    ``members`` are glob patterns relative to the unpacked package root; a ``.gz`` file is
    stored gunzipped under its name without ``.gz``.
    """

    name: str
    package: str
    members: tuple[str, ...]
    description: str


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus(
            name="debian-reference-zh",
            package="debian-reference-zh-cn",
            members=("usr/share/debian-reference/debian-reference.zh-cn.pdf",),
            description="Debian Reference in Simplified Chinese, one 251-page PDF",
        ),
        Corpus(
            name="nodejs-api",
            package="nodejs-doc",
            members=("usr/share/doc/nodejs/api/*.md.gz", "usr/share/doc/nodejs/api/*.md"),
            description="Node.js API documentation, 64 markdown files",
        ),
    )
}


def corpora_dir() -> Path:
    """The cache folder holding one sub-folder per corpus: ``$BYZERLLM_CORPORA_DIR`` if set,
    else ``~/.cache/byzerllm/corpora``."""
    env = os.environ.get("BYZERLLM_CORPORA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "byzerllm" / "corpora"


def fetch_corpus(name: str, dest: str | os.PathLike[str] | None = None) -> Path:
    """Download and unpack corpus ``name`` once; return its folder ``<dest>/<name>``.

    ``name`` is a key of ``CORPORA`` ("debian-reference-zh" or "nodejs-api"). ``dest`` is the cache
    folder for all corpora (default ``corpora_dir()``). A second call returns the existing folder
    without touching the network. The files are flat in the returned folder (``fs.md``,
    ``debian-reference.zh-cn.pdf``), plus a hidden manifest ``.corpus.json``
    (``{"name", "package", "version", "files"}``).

    Raises ``InvalidRequestError`` (``param="name"``) for an unknown name and ``CorpusFetchError``
    when ``apt-get``/``dpkg-deb`` is missing, the download fails or the package lacks the files.
    """
    corpus = CORPORA.get(name)
    if corpus is None:
        raise InvalidRequestError(
            f"unknown corpus {name!r}; accepted values: {', '.join(sorted(CORPORA))}",
            param="name",
            accepted=sorted(CORPORA),
        )
    root = Path(dest).expanduser() if dest is not None else corpora_dir()
    final = root / name
    if (final / MANIFEST).is_file():
        return final

    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise CorpusFetchError(
                f"{tool} not found: corpus {name!r} is unpacked from the Debian package "
                f"{corpus.package!r}, which needs apt-get and dpkg-deb (a Debian or Ubuntu system)",
                package=corpus.package,
            )

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root, name)
    # Stage inside ``root`` so the final rename stays on one filesystem (atomic).
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
    try:
        with tempfile.TemporaryDirectory(prefix="byzerllm-deb-") as work:
            deb = _download(corpus.package, Path(work))
            unpacked = Path(work) / "root"
            _run(["dpkg-deb", "-x", str(deb), str(unpacked)], corpus.package, "dpkg-deb -x")
            version = _run(["dpkg-deb", "-f", str(deb), "Version"], corpus.package, "dpkg-deb -f").strip()
            files = _collect(corpus, unpacked, staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the corpus is public data
        manifest = {"name": name, "package": corpus.package, "version": version, "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if final.exists() and not (final / MANIFEST).is_file():
            shutil.rmtree(final)  # left by an older, unfinished layout: never trusted
        try:
            staging.rename(final)
        except OSError:
            if not (final / MANIFEST).is_file():  # not another process finishing first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _remove_stale_partials(root: Path, name: str) -> None:
    """Remove staging folders of fetches that died (killed, power loss) more than an hour ago;
    younger ones may belong to a fetch still running in another process."""
    for partial in root.glob(f".{name}.partial-*"):
        try:
            if time.time() - partial.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(partial, ignore_errors=True)
        except FileNotFoundError:
            pass


def _download(package: str, work: Path) -> Path:
    _run(["apt-get", "download", "-q", package], package, "apt-get download", cwd=work)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise CorpusFetchError(f"apt-get download {package} left {len(debs)} .deb files in {work}", package=package)
    return debs[0]


def _run(cmd: list[str], package: str, what: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CorpusFetchError(f"{what} {package} timed out after {_APT_TIMEOUT_S} s", package=package) from exc
    if proc.returncode != 0:
        hint = ""
        if "Unable to locate package" in proc.stderr or "has no installation candidate" in proc.stderr:
            hint = " (the package lists may be empty: run `apt-get update`)"
        raise CorpusFetchError(
            f"{what} {package} failed with exit code {proc.returncode}{hint}: {proc.stderr.strip()[-2000:]}",
            package=package,
        )
    return proc.stdout


def _collect(corpus: Corpus, unpacked: Path, out: Path) -> list[str]:
    files: list[str] = []
    for pattern in corpus.members:
        for src in sorted(unpacked.glob(pattern)):
            if src.suffix == ".gz":
                target = out / src.stem
                with gzip.open(src, "rb") as fin, target.open("wb") as fout:
                    shutil.copyfileobj(fin, fout)
            else:
                target = out / src.name
                shutil.copyfile(src, target)
            files.append(target.name)
    if not files:
        raise CorpusFetchError(
            f"package {corpus.package} has no file matching {', '.join(corpus.members)}", package=corpus.package
        )
    return sorted(files)


# --- locating text in a corpus (used to verify the evaluation sets) ---------------------------------


def markdown_section(text: str, heading: str) -> str:
    """The raw markdown of the section under ``heading`` in the document ``text``: from the heading
    line up to the next heading of the same or a higher level (subsections included).

    ``heading`` is the heading's text as written after the ``#`` marks, backticks included
    (e.g. "`fs.readFile(path[, options], callback)`"). Headings are found with markdown-it-py
    (CommonMark), so ``#`` lines inside code blocks do not count. Raises ``KeyError`` if no heading
    has this text and ``ValueError`` if several do (the location would be ambiguous).
    """
    from markdown_it import MarkdownIt  # extra "rag"

    tokens = MarkdownIt("commonmark").parse(text)
    headings = [
        (int(tok.tag[1:]), tok.map[0], tokens[i + 1].content.strip())
        for i, tok in enumerate(tokens)
        if tok.type == "heading_open" and tok.map is not None
    ]
    matches = [h for h in headings if h[2] == heading.strip()]
    if not matches:
        raise KeyError(heading)
    if len(matches) > 1:
        raise ValueError(f"{len(matches)} headings have the text {heading!r}")
    level, start, _ = matches[0]
    lines = text.splitlines()
    end = next((line for lvl, line, _ in headings if line > start and lvl <= level), len(lines))
    return "\n".join(lines[start:end])


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.corpora NAME [--dest DIR]``: fetch a corpus, print its folder."""
    parser = argparse.ArgumentParser(prog="python -m tests.corpora", description=main.__doc__)
    parser.add_argument("name", choices=sorted(CORPORA))
    parser.add_argument("--dest", default=None, help="cache folder for all corpora (default: corpora_dir())")
    args = parser.parse_args(argv)
    try:
        print(fetch_corpus(args.name, args.dest))
    except ByzerLLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
