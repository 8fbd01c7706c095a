"""The in-memory vector index: exact below the IVF threshold, IVF recall above it."""

from __future__ import annotations

import numpy as np
import pytest

from byzerllm.apps.byzer_storage.vector_index import VectorIndex


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around 40 fixed centres (a centre plus isotropic noise); another
    ``seed`` draws other vectors from the same distribution."""
    centres = np.random.default_rng(0).standard_normal((40, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    x = centres[rng.integers(0, 40, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_below_threshold_and_ivf_recall_above(metric):
    mat = clustered(4000)
    rids = np.arange(100, 4100, dtype=np.int64)
    exact = VectorIndex(rids, mat, metric, ivf_min_rows=10**9)
    ivf = VectorIndex(rids, mat, metric, ivf_min_rows=1000)
    assert exact.centroids is None and ivf.centroids is not None and len(ivf.offsets) == 2 * 63 + 1
    recalls = []
    for q in clustered(30, seed=1):  # held out: drawn like the data, never stored
        truth = mat @ q if metric == "cosine" else -np.linalg.norm(mat - q, axis=1)
        expected = rids[np.argsort(-truth)[:10]]
        got, scores = exact.search(q, 10)
        assert got.tolist() == expected.tolist()
        assert scores == pytest.approx(np.sort(truth)[::-1][:10], abs=1e-4)
        got, _ = ivf.search(q, 10)
        recalls.append(len(set(got.tolist()) & set(expected.tolist())) / 10)
    assert np.mean(recalls) >= 0.95


def test_filtered_search_is_exact_over_allowed_rows():
    mat = clustered(3000)
    rids = np.arange(3000, dtype=np.int64)
    ivf = VectorIndex(rids, mat, "cosine", ivf_min_rows=1000)
    allowed = np.arange(0, 3000, 7)
    q = mat[5]
    got, _ = ivf.search(q, 5, allowed)
    expected = allowed[np.argsort(-(mat[allowed] @ q))[:5]]
    assert got.tolist() == expected.tolist()
    got, _ = ivf.search(q, 5, np.array([], dtype=np.int64))
    assert got.tolist() == []


@pytest.mark.parametrize("ivf_min_rows", [10**9, 500])
def test_writes_update_the_loaded_index_in_place(tmp_path, ivf_min_rows):
    from byzerllm.apps.byzer_storage import TableSchema
    from byzerllm.apps.byzer_storage.engine import FieldSpec, SearchRequest
    from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine

    mat = clustered(1500, dim=16)
    e = SqliteEngine(tmp_path / "u.db", ivf_min_rows=ivf_min_rows)
    e.create_table("t", TableSchema((FieldSpec("k", "long"), FieldSpec("v", "vector"))))
    e.upsert("t", [{"_id": str(i), "k": i % 2, "v": mat[i]} for i in range(1500)])
    exact = SqliteEngine(tmp_path / "u.db", vector_cache=False)

    def top(engine, q, **kw):
        return [r["_id"] for r in engine.search("t", SearchRequest(vector=q, vector_field="v", limit=5, **kw))]

    q = mat[7]
    assert top(e, q)[0] == "7"
    index = e._vcache[("t", "v")]
    e.delete_by_ids("t", ["7"])
    e.upsert("t", [{"_id": "new", "k": 1, "v": q}, {"_id": "8", "k": 0, "v": -q}])  # one new row, one replaced
    assert e._vcache[("t", "v")] is index  # updated, not reloaded
    got = top(e, q)
    assert got[0] == "new" and "7" not in got and "8" not in got
    assert got == top(exact, q) or ivf_min_rows != 10**9
    assert top(e, -q)[0] == "8"
    filtered = [
        r["_id"] for r in e.search("t", SearchRequest(vector=q, vector_field="v", limit=3, filter=_filter_k(0)))
    ]
    assert "new" not in filtered and filtered == [
        r["_id"] for r in exact.search("t", SearchRequest(vector=q, vector_field="v", limit=3, filter=_filter_k(0)))
    ]
    # many writes: the index is rebuilt on the next query instead of scanning a large segment
    e.upsert("t", [{"_id": f"x{i}", "k": 0, "v": mat[i]} for i in range(1100)])
    assert ("t", "v") not in e._vcache
    assert top(e, q)[0] in {"new", "7", "x7"}


def _filter_k(value):
    from byzerllm.apps.byzer_storage.engine import Condition, Filter

    return Filter("and", (Condition("k", value),))
