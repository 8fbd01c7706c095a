"""An interrupted ``DocumentIndex.build`` leaves every recorded file complete, and the next build
redoes the rest.

The interrupted build runs in a subprocess (``SimpleByzerLLM``, the built-in MiniLM in process)
that SIGKILLs itself inside the transaction writing the 2nd chunk batch of the 2nd file (see
``crash_points.py``); it starts before this module's own model loads, so the two load at once.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import byzerllm
from byzerllm.rag import DocumentIndex
from byzerllm.rag.chunking import chunk_sections
from byzerllm.rag.loaders import load

EMB, NAME, MAX_CHARS, BATCH = "i_emb", "kb", 120, 2
TOPICS = {  # file -> (title, one paragraph per word): 5, 6, 3 and 4 chunks of at most MAX_CHARS
    "a.md": ("Install", ["installer", "package", "wheel", "compiler", "mirror"]),
    "b.md": ("Deploy", ["replica", "worker", "pool", "queue", "slot", "gpu"]),
    "c.txt": (None, ["panda", "bamboo", "forest"]),
    "d.md": ("Search", ["vector", "bm25", "fusion", "rerank"]),
}
DEPLOY = dict(
    model_path="builtin:all-minilm-l6-v2",
    pretrained_model_type="custom/emb",
    udf_name=EMB,
    infer_params={"n_threads": 1},
)

BUILD = textwrap.dedent(
    f"""
    import sys
    import byzerllm
    from byzerllm.rag import DocumentIndex

    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from crash_points import die_inside

    docs, store, nth = sys.argv[1:]
    llm = byzerllm.SimpleByzerLLM()
    llm.deploy(**{DEPLOY!r})
    index = DocumentIndex({NAME!r}, emb_model={EMB!r}, base_dir=store, llm=llm, max_chars={MAX_CHARS})
    # the nth chunk batch: rows, FTS entries and vectors written, the process dies before COMMIT
    die_inside(index.chunks.engine, 'INSERT INTO "{NAME}_chunks$vec$vector"', int(nth))
    index.build(docs, batch_size={BATCH})
    print("done", flush=True)
    """
)


def write_docs(folder: Path, words: dict[str, list[str]] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (title, default) in TOPICS.items():
        paras = [
            f"The {w} paragraph explains how the {w} behaves. Each {w} has its own rules and limits."
            for w in (words or {}).get(name, default)
        ]
        body = (
            "\n\n".join(paras)
            if title is None
            else f"# {title}\n\n" + "\n\n".join(f"## {p.split()[1].title()}\n\n{p}" for p in paras)
        )
        (folder / name).write_text(body + "\n")


def chunk_count(folder: Path, name: str) -> int:
    return len(chunk_sections(load(folder / name, name), MAX_CHARS))


def recorded(index: DocumentIndex) -> dict[str, int]:
    """Files recorded complete (with their SHA-256), and their chunk counts."""
    return {r["_id"]: r["chunks"] for r in index.files.query_builder().set_limit(1000).execute() if r["sha256"]}


def pending(index: DocumentIndex) -> set[str]:
    """Files whose chunks were being written when the build stopped (a record without SHA-256)."""
    return {r["_id"] for r in index.files.query_builder().set_limit(1000).execute() if not r["sha256"]}


def chunk_ids(index: DocumentIndex, source: str) -> list[str]:
    rows = (
        index.chunks.query_builder()
        .and_filter()
        .add_condition("source", source)
        .build()
        .set_fields(["_id"])
        .set_limit(1000)
        .execute()
    )
    return [r["_id"] for r in rows]


def assert_recorded_files_complete(index: DocumentIndex) -> dict[str, int]:
    files = recorded(index)
    for source, n in files.items():
        assert sorted(chunk_ids(index, source)) == sorted(f"{source}#{i}" for i in range(n)), source
    report = index.chunks.engine.integrity_check()[f"{NAME}_chunks"]
    assert report["rows"] == report["vector"] == index.chunks.count()
    return files


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(docs folder, store folder, the build's subprocess), killed inside the 2nd file's 2nd batch."""
    root = tmp_path_factory.mktemp("interrupted")
    docs, store = root / "docs", root / "store"
    write_docs(docs)
    nth = math.ceil(chunk_count(docs, "a.md") / BATCH) + 2
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(docs), str(store), str(nth)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield docs, store, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def llm():
    client = byzerllm.SimpleByzerLLM()
    client.deploy(**DEPLOY)
    yield client
    client.close()


def test_interrupted_build_keeps_recorded_files_whole_and_the_next_build_redoes_the_rest(interrupted, llm):
    docs, store, proc = interrupted
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL and "done" not in out, err

    index = DocumentIndex(NAME, emb_model=EMB, base_dir=str(store), llm=llm, max_chars=MAX_CHARS)
    assert assert_recorded_files_complete(index) == {"a.md": chunk_count(docs, "a.md")}
    # the 2nd file's first batch was committed, its 2nd died with the process; it is marked pending
    assert sorted(chunk_ids(index, "b.md")) == [f"b.md#{i}" for i in range(BATCH)]
    assert pending(index) == {"b.md"}

    stats = index.build(str(docs), batch_size=BATCH)
    expected = {name: chunk_count(docs, name) for name in TOPICS}
    assert (stats.files, stats.indexed, stats.unchanged, stats.removed, stats.errors) == (4, 3, 1, 0, [])
    assert stats.chunks == sum(n for name, n in expected.items() if name != "a.md")
    assert assert_recorded_files_complete(index) == expected
    ids = [r["_id"] for r in index.chunks.query_builder().set_fields(["_id"]).set_limit(1000).execute()]
    assert len(ids) == len(set(ids)) == index.chunks.count() == sum(expected.values())
    assert index.search("how does the gpu behave", top_k=1, mode="fulltext")[0].source == "b.md"
    assert index.build(str(docs), batch_size=BATCH).unchanged == 4


def failing_write(index: DocumentIndex, nth: int) -> None:
    """Make the ``nth`` chunk batch written from now on fail before its transaction: for the file
    being written, the store is left as a process killed there leaves it."""
    engine, calls = index.chunks.engine, [0]
    upsert = engine.upsert

    def write(table, rows):
        calls[0] += 1
        if calls[0] == nth:
            raise OSError("killed")
        return upsert(table, rows)

    engine.upsert = write


def test_interrupted_rewrite_of_a_changed_file_leaves_its_record_true(llm, tmp_path):
    docs = tmp_path / "docs"
    write_docs(docs)
    index = DocumentIndex(NAME, emb_model=EMB, base_dir=str(tmp_path / "store"), llm=llm, max_chars=MAX_CHARS)
    index.build(str(docs), batch_size=BATCH)
    texts = {r["_id"]: r["text"] for r in index.chunks.query_builder().set_limit(1000).execute()}
    write_docs(docs, {"b.md": ["cluster", "server", "client", "router", "proxy", "node"]})
    failing_write(index, 2)  # b.md's 1st batch of new chunks is written, the 2nd is not
    stats = index.build(str(docs), batch_size=BATCH)
    assert [e.split(":")[0] for e in stats.errors] == ["b.md"] and pending(index) == {"b.md"}
    write_docs(docs)  # the edit is undone: b.md is again the version its old record named
    again = index.build(str(docs), batch_size=BATCH)
    assert (again.indexed, again.unchanged, again.errors) == (1, 3, [])  # its chunks are mixed: redone
    assert {r["_id"]: r["text"] for r in index.chunks.query_builder().set_limit(1000).execute()} == texts


def test_remains_of_an_interrupted_file_go_when_the_file_is_removed(llm, tmp_path):
    docs = tmp_path / "docs"
    write_docs(docs)
    index = DocumentIndex(NAME, emb_model=EMB, base_dir=str(tmp_path / "store"), llm=llm, max_chars=MAX_CHARS)
    failing_write(index, math.ceil(chunk_count(docs, "a.md") / BATCH) + 2)  # b.md's 2nd batch
    assert [e.split(":")[0] for e in index.build(str(docs), batch_size=BATCH).errors] == ["b.md"]
    assert chunk_ids(index, "b.md") and pending(index) == {"b.md"}
    (docs / "b.md").unlink()
    assert index.build(str(docs), batch_size=BATCH).removed == 1
    assert index.chunks.count() == sum(recorded(index).values()) and not chunk_ids(index, "b.md")
