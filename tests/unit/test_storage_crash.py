"""A process killed inside a write transaction leaves the store consistent; re-running the ingest
completes it. On both engines: the SQLite file, and a PostgreSQL server whose client dies.

The ingest runs in a subprocess that SIGKILLs itself at an exact statement of one batch's
transaction (see ``crash_points.py``). ``SqliteEngine.upsert`` writes a batch as: delete the FTS
entries and vectors of rows being replaced, insert/update the rows, insert their FTS entries,
insert their vectors, COMMIT. ``PostgresEngine.upsert``: lock the table's entry, take the rows
being replaced out of the BM25 statistics, insert/update the rows (text, vectors), count their
terms, update the row and token totals, COMMIT. A writer killed from outside at any moment
leaves whole batches too.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from byzerllm.apps.byzer_storage import ByzerStorage
from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine, _sqlite

N, BATCH, DIM = 600, 100, 32
ROWS, FTS, VEC = 'INSERT INTO "chunks$rows"', 'INSERT INTO "chunks$fts"', 'INSERT INTO "chunks$vec$vector"'
DEL_FTS, DEL_VEC = 'DELETE FROM "chunks$fts"', 'DELETE FROM "chunks$vec$vector"'
# the statements of PostgresEngine.upsert, in their order (schema "db", table "chunks")
PG_FORGET = 'WITH o AS (SELECT * FROM "db"."chunks$rows"'
PG_ROWS = 'INSERT INTO "db"."chunks$rows"'
PG_TERMS = 'INSERT INTO "db"."chunks$df"'
PG_TOTALS = 'UPDATE "db"._byzer_tables SET docs'

INGEST = textwrap.dedent(
    f"""
    import sys
    import numpy as np
    from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption

    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from crash_points import die_inside

    base, statement, nth, after = sys.argv[1:]
    s = ByzerStorage("crash", "db", "chunks", base_dir=base)
    if not s.table_exists():
        (s.schema_builder().add_field("_id", DataType.STRING)
         .add_field("content", DataType.STRING, [FieldOption.ANALYZE])
         .add_array_field("vector", DataType.FLOAT).execute())
    if statement != "-":
        die_inside(s.engine, statement, int(nth), None if after == "-" else int(after))
    vecs = np.random.default_rng(0).standard_normal(({N}, {DIM})).astype(np.float32)
    rows = [{{"_id": f"c{{i}}", "content": f"chunk {{i}} vector retrieval", "vector": vecs[i]}} for i in range({N})]
    for b in range(0, {N}, {BATCH}):
        w = s.write_builder()
        w.batch_size = {BATCH}
        w.add_items(rows[b : b + {BATCH}], vector_fields=["vector"], search_fields=["content"]).execute()
        print("batch", b // {BATCH}, flush=True)
    print("done", flush=True)
    """
)
VECS = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)


def ingest(base: Path, statement: str = "-", nth: int = 0, after: int | None = None) -> subprocess.CompletedProcess:
    args = [str(base), statement, str(nth), "-" if after is None else str(after)]
    return subprocess.run([sys.executable, "-c", INGEST, *args], capture_output=True, text=True, timeout=120)


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL and "done" not in proc.stdout


def assert_consistent(base: Path, n: int) -> None:
    """The store holds exactly rows c0..c{n-1}, each with one FTS entry and one vector, and both
    query kinds see exactly those rows."""
    storage = ByzerStorage("crash", "db", "chunks", base_dir=str(base))
    # SQLite: integrity check, counts; PostgreSQL: counts, and the BM25 statistics match the rows
    assert storage.engine.integrity_check()["chunks"] == {"rows": n, "vector": n}
    if isinstance(storage.engine, SqliteEngine):
        conn = _sqlite().connect(str(storage.path))  # the FTS index is contentless: compare its rowids
        rids = {r[0] for r in conn.execute('SELECT "$rid" FROM "chunks$rows"')}
        fts = [r[0] for r in conn.execute('SELECT rowid FROM "chunks$fts"')]
        conn.close()
        assert len(fts) == n and set(fts) == rids
    ids = [r["_id"] for r in storage.query_builder().set_limit(2 * N).execute()]
    assert sorted(ids) == sorted(f"c{i}" for i in range(n))  # whole batches, in order
    assert len(storage.query_builder().set_search_query("retrieval", "content").set_limit(2 * N).execute()) == n
    assert len(storage.query_builder().set_vector_query(VECS[0].tolist(), "vector").set_limit(2 * N).execute()) == n
    last = storage.query_builder().set_vector_query(VECS[n - 1].tolist(), "vector").set_limit(1).execute()
    assert last[0]["_id"] == f"c{n - 1}" and last[0]["content"] == f"chunk {n - 1} vector retrieval"
    assert storage.query_builder().set_search_query(str(n - 1), "content").execute()[0]["_id"] == f"c{n - 1}"
    if n < N:  # the killed batch left nothing behind
        assert not storage.query_builder().set_search_query(str(n), "content").execute()
        assert (
            storage.query_builder().set_vector_query(VECS[n].tolist(), "vector").set_limit(1).execute()[0]["_id"]
            != f"c{n}"
        )
    storage.close()


@pytest.mark.engines("sqlite")
@pytest.mark.parametrize(
    ("statement", "after"),
    [
        (ROWS, None),  # rows of the batch inserted; no FTS entries or vectors yet
        (FTS, BATCH // 2),  # half the batch's FTS entries inserted
        (FTS, None),  # rows and FTS entries inserted; no vectors
        (VEC, None),  # everything inserted: the process dies just before COMMIT
    ],
    ids=["after-rows", "mid-fts", "after-fts", "before-commit"],
)
def test_kill_inside_a_batch_then_resume(tmp_path, statement, after):
    assert killed(ingest(tmp_path, statement, nth=3, after=after))  # dies inside the 3rd batch
    assert_consistent(tmp_path, 2 * BATCH)

    again = ingest(tmp_path)  # the same job, re-run: upserts by _id
    assert again.returncode == 0 and again.stdout.strip().endswith("done"), again.stderr
    assert_consistent(tmp_path, N)


@pytest.mark.engines("sqlite")
def test_kill_while_resuming_over_committed_rows(tmp_path):
    """The resumed ingest replaces rows that exist: killed after it removed their FTS entries and
    vectors, the old ones are still there."""
    assert killed(ingest(tmp_path, ROWS, nth=4))
    assert_consistent(tmp_path, 3 * BATCH)
    assert killed(ingest(tmp_path, DEL_VEC, nth=2))  # 2nd batch: its FTS entries and vectors deleted
    assert_consistent(tmp_path, 3 * BATCH)
    assert killed(ingest(tmp_path, DEL_FTS, nth=3, after=10))  # 3rd batch: 10 of its FTS entries deleted
    assert_consistent(tmp_path, 3 * BATCH)

    again = ingest(tmp_path)
    assert again.returncode == 0, again.stderr
    assert_consistent(tmp_path, N)


@pytest.mark.engines("postgres")
@pytest.mark.parametrize(
    ("statement", "after"),
    [
        (PG_ROWS, BATCH // 2),  # half the batch's rows sent to the server
        (PG_TERMS, None),  # rows inserted, their terms counted; totals not updated
        (PG_TOTALS, None),  # everything written: the client dies just before COMMIT
    ],
    ids=["mid-rows", "after-terms", "before-commit"],
)
def test_postgres_client_killed_inside_a_batch_then_resume(tmp_path, statement, after):
    assert killed(ingest(tmp_path, statement, nth=3, after=after))  # dies inside the 3rd batch
    assert_consistent(tmp_path, 2 * BATCH)
    again = ingest(tmp_path)
    assert again.returncode == 0 and again.stdout.strip().endswith("done"), again.stderr
    assert_consistent(tmp_path, N)


@pytest.mark.engines("postgres")
def test_postgres_client_killed_while_resuming_over_committed_rows(tmp_path):
    """Replacing committed rows first takes them out of the BM25 statistics: killed after that,
    or halfway through sending the new rows, the old rows and statistics are still there."""
    assert killed(ingest(tmp_path, PG_ROWS, nth=4))
    assert_consistent(tmp_path, 3 * BATCH)
    assert killed(ingest(tmp_path, PG_FORGET, nth=2))  # 2nd batch: its old rows' terms uncounted
    assert_consistent(tmp_path, 3 * BATCH)
    assert killed(ingest(tmp_path, PG_ROWS, nth=3, after=10))
    assert_consistent(tmp_path, 3 * BATCH)
    again = ingest(tmp_path)
    assert again.returncode == 0, again.stderr
    assert_consistent(tmp_path, N)


@pytest.mark.engines("sqlite", "postgres")
def test_writer_killed_from_outside_leaves_whole_batches(tmp_path):
    """SIGKILL of the writer at a moment the test does not choose (after its 2nd batch reported,
    while it writes the next ones): the store holds whole batches only."""
    args = [str(tmp_path), "-", "0", "-"]
    proc = subprocess.Popen([sys.executable, "-c", INGEST, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "batch 1":
            time.sleep(0.05)
            proc.kill()
            break
    proc.wait(timeout=60)
    storage = ByzerStorage("crash", "db", "chunks", base_dir=str(tmp_path))
    n = storage.count()
    storage.close()
    assert n % BATCH == 0 and 2 * BATCH <= n <= N
    assert_consistent(tmp_path, n)
