"""Hybrid fusion: reciprocal rank fusion (default) and the convex combination of normalised scores."""

from __future__ import annotations

import math

import pytest

from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption, SearchRequest, StorageError
from byzerllm.apps.byzer_storage.fusion import convex, rrf

from .test_storage_api import ids, make, rows

ENGINES = pytest.mark.engines("sqlite", "postgres")
VECTOR = [("a", 0.9), ("c", 0.5), ("b", 0.1)]  # cosine similarity, best first
BM25 = [("c", 10.0), ("d", 9.0), ("b", 2.0)]  # -bm25, best first


def test_convex_fusion_by_hand():
    # min-max per list: vector a 1, c (0.5 - 0.1) / 0.8 = 0.5, b 0; BM25 c 1, d 7/8, b 0; a missing
    # from BM25 and d from vector get 0 there
    got = convex([VECTOR, BM25])
    assert [i for i, _ in got] == ["c", "a", "d", "b"]
    assert [s for _, s in got] == pytest.approx([1.5, 1.0, 0.875, 0.0])
    # RRF sees ranks only: b, last in both lists, beats a and d, first and second in one list each
    assert [i for i, _ in rrf([[i for i, _ in VECTOR], [i for i, _ in BM25]])] == ["c", "b", "a", "d"]


def test_convex_fusion_equal_scores_and_empty_lists():
    # a list whose scores are all equal gives each of its rows 1.0; so does a one-row list
    assert convex([[("a", 2.0), ("b", 2.0)], [("b", 5.0), ("c", 1.0)]]) == [("b", 2.0), ("a", 1.0), ("c", 0.0)]
    assert convex([[("x", -3.5)], []]) == [("x", 1.0)]
    assert convex([[], []]) == []
    # negative scores (-L2 distance) normalise the same way: higher is better
    got = convex([[("near", -0.2), ("mid", -0.6), ("far", -1.0)]])
    assert [i for i, _ in got] == ["near", "mid", "far"]
    assert [s for _, s in got] == pytest.approx([1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="finite"):
        convex([[("a", math.nan), ("b", 1.0)]])


@pytest.fixture
def storage(tmp_path):
    s = make(tmp_path)
    s.write_builder().add_items(rows(), vector_fields=["vector"], search_fields=["content"]).execute()
    yield s
    s.close()


@ENGINES
def test_hybrid_convex_fuses_the_engine_scores(storage):
    vec, text = rows()[3]["vector"], "数据库 rank fusion"
    v = storage.query_builder().set_vector_query(vec, "vector").set_limit(50).execute()
    t = storage.query_builder().set_search_query(text, "content").set_limit(50).execute()
    # both methods return higher-is-better scores, best first: what convex() expects
    for hits in (v, t):
        assert [h["_score"] for h in hits] == sorted((h["_score"] for h in hits), reverse=True)
    assert all(h["_score"] > 0 for h in t)  # -bm25 on SQLite (FTS5's bm25() is negative, lower is better)
    got = (
        storage.query_builder()
        .set_vector_query(vec, "vector")
        .set_search_query(text, "content")
        .set_fusion("convex")
        .set_limit(4)
        .execute()
    )
    expected = convex([[(h["_id"], h["_score"]) for h in v], [(h["_id"], h["_score"]) for h in t]])[:4]
    assert ids(got) == [i for i, _ in expected]
    assert [r["_score"] for r in got] == pytest.approx([s for _, s in expected])
    assert all(0.0 <= r["_score"] <= 2.0 for r in got)
    # the default stays reciprocal rank fusion
    default = storage.query_builder().set_vector_query(vec, "vector").set_search_query(text, "content").set_limit(4)
    assert default.request().fusion == "rrf"
    assert ids(default.execute()) == [i for i, _ in rrf([ids(v), ids(t)])[:4]]


@ENGINES
def test_hybrid_convex_with_l2_distance(tmp_path):
    # k-NN _score is -L2 distance here (0 or negative), still higher-is-better
    l2 = ByzerStorage("byzerai_store", "l2db", "docs", base_dir=str(tmp_path))
    builder = (
        l2.schema_builder()
        .add_field("content", DataType.STRING, [FieldOption.ANALYZE])
        .add_array_field("vector", DataType.FLOAT)
    )
    builder.distance_metric = "l2"
    builder.execute()
    data = [
        {"_id": str(i), "content": c, "vector": [float(i), 0.0]}
        for i, c in enumerate(["alpha beta", "beta", "gamma", "beta gamma"])
    ]
    l2.write_builder().add_items(data, vector_fields=["vector"], search_fields=["content"]).execute()
    v = l2.query_builder().set_vector_query([0.0, 0.0], "vector").set_limit(50).execute()
    t = l2.query_builder().set_search_query("beta", "content").set_limit(50).execute()
    assert [h["_score"] for h in v] == pytest.approx([0.0, -1.0, -2.0, -3.0])
    got = (
        l2.query_builder()
        .set_vector_query([0.0, 0.0], "vector")
        .set_search_query("beta", "content")
        .set_fusion("convex")
        .execute()
    )
    expected = convex([[(h["_id"], h["_score"]) for h in v], [(h["_id"], h["_score"]) for h in t]])
    # vector 0 1 2 3 -> 1, 2/3, 1/3, 0; "beta" in rows 1 (one word: best BM25) and 0, 3
    assert ids(got) == [i for i, _ in expected] and ids(got)[0] == "1"
    l2.close()


@ENGINES
@pytest.mark.parametrize("name", ["linear", "RRF", "", None])
def test_unknown_fusion_names_the_field_and_the_accepted_values(storage, name):
    with pytest.raises(StorageError) as info:
        storage.query_builder().set_fusion(name)
    assert info.value.param == "fusion"
    assert "'fusion'" in str(info.value) and "accepted: rrf, convex" in str(info.value)
    # a SearchRequest built by hand is checked by the engine too
    with pytest.raises(StorageError, match="accepted: rrf, convex") as info:
        storage.engine.search(storage.table, SearchRequest(keyword="rank", fusion=name))
    assert info.value.param == "fusion"
