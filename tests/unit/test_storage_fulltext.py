"""BM25 details: segmentation, the term budget for common words (both engines), IVF inside the
SQLite engine."""

from __future__ import annotations

import numpy as np
import pytest

from byzerllm.apps.byzer_storage import TableSchema
from byzerllm.apps.byzer_storage.engine import FieldSpec, SearchRequest
from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine
from byzerllm.apps.byzer_storage.text import fts5_match, query_terms, segment


def test_segmentation_and_query_terms():
    assert segment("plain English stays") == "plain English stays"
    words = segment("使用向量数据库").split()
    assert "向量" in words and "数据库" in words
    assert query_terms("The 数据库, the THE!") == ["the", "数据", "据库", "数据库"]  # search mode: sub-words too
    assert fts5_match(["a", 'b"c'], ["c0"]) == '{c0}: ("a" OR "b""c")'
    assert fts5_match(["a", "b"], [], "AND") == '"a" AND "b"'


def engine(open_engine, **kw):
    e = open_engine("ft", **kw)
    e.create_table("t", TableSchema((FieldSpec("content", "string", analyze=True), FieldSpec("v", "vector"))))
    rows = [
        {"_id": f"d{i}", "content": "common words" + (" alpha" if i < 60 else "") + (" beta" if i >= 55 else "")}
        for i in range(115)
    ]
    rows += [{"_id": "r1", "content": "common rare"}, {"_id": "r2", "content": "rare"}]
    e.upsert("t", rows)
    return e


def ids(rows):
    return [r["_id"] for r in rows]


@pytest.mark.engines("sqlite", "postgres")
def test_common_terms_are_left_out_over_the_budget(open_engine):
    e = engine(open_engine, fts_budget=50)
    got = ids(e.search("t", SearchRequest(keyword="common rare", limit=10)))
    assert sorted(got) == ["r1", "r2"]  # "common" (116 documents) is over the budget
    # every term over the budget (60 documents each): the 5 documents with both are ranked
    got = ids(e.search("t", SearchRequest(keyword="alpha beta", limit=200)))
    assert sorted(got) == [f"d{i}" for i in range(55, 60)]
    plain = open_engine("ft", fts_budget=0)
    got = ids(plain.search("t", SearchRequest(keyword="common rare", limit=10)))
    assert got[:2] == ["r1", "r2"] or got[:2] == ["r2", "r1"]
    assert len(got) == 10  # plain BM25 OR: common-only documents too


def test_engine_switches_to_ivf_above_the_threshold(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 24)).astype(np.float32)
    x = centres[rng.integers(0, 20, 2000)] + 0.5 * rng.standard_normal((2000, 24)).astype(np.float32)
    e = SqliteEngine(tmp_path / "ivf.db", ivf_min_rows=500)
    e.create_table("t", TableSchema((FieldSpec("k", "long"), FieldSpec("v", "vector"))))
    e.upsert("t", [{"_id": str(i), "k": i % 3, "v": x[i]} for i in range(2000)])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    recalls = []
    for i in range(20):
        q = unit[i * 7]
        exact = {str(j) for j in np.argsort(-(unit @ q))[:10]}
        got = ids(e.search("t", SearchRequest(vector=q, vector_field="v", limit=10)))
        recalls.append(len(exact & set(got)) / 10)
    assert e._vcache[("t", "v")].centroids is not None
    assert np.mean(recalls) >= 0.95
