"""The in-memory vector index: exact below the IVF threshold, IVF recall above it."""

from __future__ import annotations

import numpy as np
import pytest

from byzerllm.apps.byzer_storage.vector_index import VectorIndex


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_below_threshold_and_ivf_recall_above(metric):
    mat = clustered(4000)
    rids = np.arange(100, 4100, dtype=np.int64)
    exact = VectorIndex(rids, mat, metric, ivf_min_rows=10**9)
    ivf = VectorIndex(rids, mat, metric, ivf_min_rows=1000)
    assert exact.centroids is None and ivf.centroids is not None and len(ivf.offsets) == 2 * 63 + 1
    rng = np.random.default_rng(1)
    recalls = []
    for i in rng.integers(0, 4000, 30):
        q = mat[i] + 0.05 * rng.standard_normal(mat.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
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
