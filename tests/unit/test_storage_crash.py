"""A process killed mid-ingest leaves the store consistent; re-running the ingest completes it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from byzerllm.apps.byzer_storage import ByzerStorage
from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine

N, BATCH, DIM = 2000, 100, 32

INGEST = textwrap.dedent(
    f"""
    import sys
    import numpy as np
    from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption

    s = ByzerStorage("crash", "db", "chunks", base_dir=sys.argv[1])
    (s.schema_builder().add_field("_id", DataType.STRING).add_field("content", DataType.STRING, [FieldOption.ANALYZE])
     .add_array_field("vector", DataType.FLOAT).execute())
    vecs = np.random.default_rng(0).standard_normal(({N}, {DIM})).astype(np.float32)
    rows = [{{"_id": f"c{{i}}", "content": f"chunk {{i}} 第{{i}}段 向量检索", "vector": vecs[i]}} for i in range({N})]
    w = s.write_builder()
    w.batch_size = {BATCH}
    for start in range(0, {N}, {BATCH} * 5):
        w.add_items(rows[start:start + {BATCH} * 5], vector_fields=["vector"], search_fields=["content"]).execute()
        print(start, flush=True)
    print("done", flush=True)
    """
)


def ingest(base: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", INGEST, base], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kill_after", [2])
def test_kill_mid_ingest_then_resume(tmp_path, kill_after):
    proc = ingest(str(tmp_path))
    for _ in range(kill_after):  # let a few batches commit, then kill while the next ones are written
        assert proc.stdout.readline().strip() != "done"
    proc.kill()
    proc.wait(timeout=30)

    storage = ByzerStorage("crash", "db", "chunks", base_dir=str(tmp_path))
    report = SqliteEngine(storage.path).integrity_check()["chunks"]
    assert 0 < report["rows"] < N
    assert report["rows"] % BATCH == 0  # whole batches only
    assert report["vector"] == report["rows"]  # every row has its vector, no orphan vectors
    hits = storage.query_builder().set_search_query("向量检索", "content").set_limit(N).execute()
    assert len(hits) == report["rows"]

    again = ingest(str(tmp_path))  # the same job, re-run: upserts by _id
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and out.strip().endswith("done")
    report = SqliteEngine(storage.path).integrity_check()["chunks"]
    assert report == {"rows": N, "vector": N}
    vecs = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    top = storage.query_builder().set_vector_query(vecs[1234].tolist(), "vector").set_limit(1).execute()
    assert top[0]["_id"] == "c1234" and top[0]["content"] == "chunk 1234 第1234段 向量检索"
    assert len(storage.query_builder().set_search_query("第1234段", "content").execute()) >= 1
