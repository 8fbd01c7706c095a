"""ByzerStorage on both engines (SQLite files, a PostgreSQL server): schema, writes, upsert, delete,
truncate, drop, search."""

from __future__ import annotations

import numpy as np
import pytest

from byzerllm.apps.byzer_storage import (
    ByzerStorage,
    DataType,
    FieldOption,
    SortOption,
    StorageError,
    TableNotFoundError,
    UnknownFieldError,
    VectorDimensionError,
)
from byzerllm.apps.byzer_storage.fusion import rrf
from byzerllm.apps.byzer_storage.sqlite_engine import SqliteEngine
from byzerllm.errors import InvalidRequestError

pytestmark = pytest.mark.engines("sqlite", "postgres")
DIM = 16
TEXTS = [
    "我们使用向量数据库来存储文本的嵌入",
    "中华人民共和国成立于一九四九年",
    "Deploying models on a Ray cluster with worker pools",
    "Hello world, this is the first program",
    "全文检索使用倒排索引和BM25排序",
    "The reciprocal rank fusion of two rankings",
]


def make(tmp_path, table="docs", **kw) -> ByzerStorage:
    storage = ByzerStorage("byzerai_store", "testdb", table, base_dir=str(tmp_path), **kw)
    created = (
        storage.schema_builder()
        .add_field("_id", DataType.STRING)
        .add_field("name", DataType.STRING)
        .add_field("content", DataType.STRING, [FieldOption.ANALYZE])
        .add_field("raw_content", DataType.STRING, [FieldOption.NO_INDEX])
        .add_array_field("vector", DataType.FLOAT)
        .add_field("created_time", DataType.LONG, [FieldOption.SORT])
        .add_field("score", DataType.DOUBLE)
        .add_field("active", DataType.BOOLEAN)
        .add_array_field("tags", DataType.STRING)
        .execute()
    )
    assert created is True
    return storage


def rows(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    return [
        {
            "_id": str(i),
            "name": "AI" if i % 2 else "other",
            "content": TEXTS[i % len(TEXTS)],
            "raw_content": TEXTS[i % len(TEXTS)],
            "vector": vecs[i].tolist(),
            "created_time": 1000 + i,
            "score": i / 10,
            "active": i % 3 == 0,
            "tags": [f"t{i}", "all"],
        }
        for i in range(n)
    ]


@pytest.fixture
def storage(tmp_path):
    s = make(tmp_path)
    s.write_builder().add_items(rows(), vector_fields=["vector"], search_fields=["content"]).execute()
    assert s.commit() is True
    yield s
    s.close()


def ids(results):
    return [r["_id"] for r in results]


@pytest.mark.engines("sqlite")
def test_file_location_and_env_override(tmp_path, monkeypatch):
    s = make(tmp_path)
    assert s.path == tmp_path / "byzerai_store" / "testdb.db" and s.path.exists()
    monkeypatch.setenv("BYZERLLM_STORAGE_DIR", str(tmp_path / "env"))
    s2 = ByzerStorage(None, "other", "t")
    assert s2.path == tmp_path / "env" / "byzerai_store" / "other.db"


def test_the_engine_is_the_one_chosen(storage, store_engine):
    from byzerllm.apps.byzer_storage.postgres_engine import PostgresEngine

    assert isinstance(storage.engine, {"sqlite": SqliteEngine, "postgres": PostgresEngine}[store_engine])
    assert (storage.url is None) == (store_engine == "sqlite")


def test_schema_builder_text_and_existing_table(tmp_path):
    s = make(tmp_path)
    b = s.schema_builder().add_field("_id", DataType.STRING).add_field("c", DataType.STRING, [FieldOption.ANALYZE])
    assert b.add_array_field("v", DataType.FLOAT).build() == (
        "st(field(_id,string),field(c,string,analyze),field(v,array(float)))"
    )
    assert b.execute() is False  # the table exists: unchanged
    schema = s.engine.get_schema("docs")
    assert schema.field("vector").kind == "vector" and schema.field("tags").kind == "json"
    assert [f.name for f in schema.analyzed] == ["content"]


def test_write_returns_every_field_with_original_text(storage):
    assert storage.count() == len(TEXTS)
    (row,) = storage.query_builder().and_filter().add_condition("_id", "1").build().execute()
    assert row == {
        "_id": "1",
        "name": "AI",
        "content": TEXTS[1],
        "raw_content": TEXTS[1],
        "created_time": 1001,
        "score": 0.1,
        "active": False,
        "tags": ["t1", "all"],
    }
    with_vec = (
        storage.query_builder().and_filter().add_condition("_id", "1").build().set_fields(["vector", "name"]).execute()
    )
    assert set(with_vec[0]) == {"_id", "vector", "name"}
    assert np.allclose(with_vec[0]["vector"], rows()[1]["vector"], atol=1e-6)


def test_upsert_replaces_by_id_and_reindexes(storage):
    new = {**rows()[0], "content": "完全不同的新内容 replaced", "vector": [1.0] * DIM}
    storage.write_builder().add_items([new], vector_fields=["vector"], search_fields=["content"]).execute()
    assert storage.count() == len(TEXTS)
    assert ids(storage.query_builder().set_search_query("replaced", fields=["content"]).execute()) == ["0"]
    assert storage.query_builder().set_search_query("向量数据库", fields=["content"]).execute() == []
    top = storage.query_builder().set_vector_query([1.0] * DIM, fields=["vector"]).set_limit(1).execute()
    assert ids(top) == ["0"] and top[0]["_score"] == pytest.approx(1.0, abs=1e-5)
    # the same _id twice in one batch: the last one wins
    storage.write_builder().add_items([{**new, "name": "a"}, {**new, "name": "b"}], search_fields=["content"]).execute()
    assert storage.count() == len(TEXTS)
    assert storage.query_builder().and_filter().add_condition("_id", "0").build().execute()[0]["name"] == "b"


def test_items_are_not_mutated(tmp_path):
    s = make(tmp_path)
    items = rows(2)
    before = [dict(r) for r in items]
    s.write_builder().add_items(items, vector_fields=["vector"], search_fields=["content"]).execute()
    assert items == before


def test_delete_truncate_drop(storage, tmp_path):
    storage.delete_by_ids(["1", "2", "missing"])
    assert storage.count() == len(TEXTS) - 2
    assert "1" not in ids(storage.query_builder().set_vector_query(rows()[1]["vector"], "vector").execute())
    assert storage.query_builder().set_search_query("中华人民共和国", "content").execute() == []
    q = storage.query_builder()
    q.and_filter().add_condition("name", "other").build()
    assert q.delete() == 2 and storage.count() == 2  # "0" and "4"; "2" was deleted above
    storage.truncate_table()
    assert storage.count() == 0 and storage.table_exists()
    # the dimension survives truncation: a wrong one is still refused
    with pytest.raises(VectorDimensionError):
        storage.write_builder().add_items([{**rows()[0], "vector": [0.0] * 3}], vector_fields=["vector"]).execute()
    assert storage.drop() is True and not storage.table_exists() and storage.drop() is False
    with pytest.raises(TableNotFoundError, match="docs"):
        storage.count()


def test_knn_matches_numpy_brute_force(tmp_path, store_engine):
    s = make(tmp_path)
    data = rows(300, seed=3)
    s.write_builder().add_items(data, vector_fields=["vector"], search_fields=["content"]).execute()
    mat = np.array([r["vector"] for r in data], dtype=np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    vec0 = SqliteEngine(s.path, vector_cache=False) if store_engine == "sqlite" else None  # sqlite-vec's own scan
    rng = np.random.default_rng(7)
    for _ in range(10):
        q = rng.standard_normal(DIM).astype(np.float32)
        expected = [str(i) for i in np.argsort(-(mat @ (q / np.linalg.norm(q))))[:10]]
        got = s.query_builder().set_vector_query(q.tolist(), fields=["vector"]).execute()
        assert ids(got) == expected
        if vec0 is not None:
            assert (
                ids(vec0.search("docs", s.query_builder().set_vector_query(q.tolist(), "vector").request())) == expected
            )
        sims = mat[[int(i) for i in expected]] @ (q / np.linalg.norm(q))
        assert [r["_score"] for r in got] == pytest.approx(sims.tolist(), abs=1e-5)


def test_l2_metric(tmp_path):
    s = ByzerStorage("c", "db", "l2", base_dir=str(tmp_path))
    b = s.schema_builder().add_field("_id", DataType.STRING).add_array_field("v", DataType.FLOAT)
    b.distance_metric = "l2"
    b.execute()
    pts = {"a": [0.0, 0.0], "b": [3.0, 4.0], "c": [1.0, 1.0]}
    s.write_builder().add_items([{"_id": k, "v": v} for k, v in pts.items()], vector_fields=["v"]).execute()
    got = s.query_builder().set_vector_query([0.9, 0.9], "v").execute()
    assert ids(got) == ["c", "a", "b"]
    assert got[2]["_score"] == pytest.approx(-np.hypot(2.1, 3.1), abs=1e-5)


def test_chinese_word_inside_a_run_is_found(storage):
    # "人民" and "数据库" are inside runs of Chinese characters with no spaces
    assert ids(storage.query_builder().set_search_query("人民", fields=["content"]).execute()) == ["1"]
    assert ids(storage.query_builder().set_search_query("数据库", fields="content").execute()) == ["0"]
    assert "4" in ids(storage.query_builder().set_search_query("如何排序", fields=["content"]).execute())
    assert storage.tokenize("使用向量数据库").split()[:2] == ["使用", "向量"]


def test_fulltext_bm25_english_and_operators_are_plain_words(storage):
    got = storage.query_builder().set_search_query("deploy models", fields=["content"]).execute()
    assert ids(got)[0] == "2" and got[0]["_score"] > 0  # porter stemming: deploy ~ deploying
    assert storage.query_builder().set_search_query('AND OR NOT "(" *', fields=["content"]).execute() == []
    assert (
        storage.query_builder().set_search_query("   ", fields=["content"]).set_limit(3).execute()
        == storage.query_builder().set_limit(3).execute()
    )


def test_filters_sort_limit(storage):
    q = storage.query_builder()
    q.and_filter().add_condition("name", "AI").build().sort("created_time", SortOption.DESC)
    assert ids(q.execute()) == ["5", "3", "1"]
    q = storage.query_builder().sort("created_time", SortOption.ASC).set_limit(2)
    assert ids(q.execute()) == ["0", "1"]
    q = storage.query_builder()
    q.or_filter().add_condition("_id", "0").add_condition("active", True).build()
    assert sorted(ids(q.execute())) == ["0", "3"]
    q = storage.query_builder()
    q.and_filter().add_condition("created_time", 1003, op=">=").add_condition("score", 0.45, op="<").build()
    assert sorted(ids(q.execute())) == ["3", "4"]
    q = storage.query_builder()
    q.and_filter().add_condition("_id", ["1", "4"], op="in").build()
    assert sorted(ids(q.execute())) == ["1", "4"]
    # filter + vector: only matching rows, nearest first
    q = storage.query_builder().set_vector_query(rows()[2]["vector"], "vector")
    q.and_filter().add_condition("name", "AI").build()
    got = ids(q.execute())
    assert sorted(got) == ["1", "3", "5"] and "2" not in got
    # filter + full text
    q = storage.query_builder().set_search_query("使用 索引 program", "content")
    q.and_filter().add_condition("name", "other").build()
    assert set(ids(q.execute())) == {"0", "4"}
    # search + sort: the top rows by relevance, then ordered by the sort key
    q = storage.query_builder().set_vector_query(rows()[0]["vector"], "vector").set_limit(3)
    top3 = set(ids(q.execute()))
    got = q.sort("created_time", SortOption.ASC).execute()
    assert set(ids(got)) == top3 and [r["created_time"] for r in got] == sorted(r["created_time"] for r in got)


def test_hybrid_is_rrf_of_both_rankings(storage):
    vec = rows()[3]["vector"]
    v = ids(storage.query_builder().set_vector_query(vec, "vector").set_limit(50).execute())
    t = ids(storage.query_builder().set_search_query("数据库 rank fusion", "content").set_limit(50).execute())
    got = (
        storage.query_builder()
        .set_vector_query(vec, "vector")
        .set_search_query("数据库 rank fusion", "content")
        .set_limit(4)
        .execute()
    )
    expected = rrf([v, t], k=60)[:4]
    assert ids(got) == [i for i, _ in expected]
    assert [r["_score"] for r in got] == pytest.approx([s for _, s in expected])
    assert rrf([["a", "b"], ["b", "c"]]) == [("b", 1 / 62 + 1 / 61), ("a", 1 / 61), ("c", 1 / 62)]


@pytest.mark.parametrize(
    ("build", "exc", "field"),
    [
        (
            lambda s: s.write_builder().add_items([{"_id": "x", "nope": 1}], search_fields=["content"]).execute(),
            UnknownFieldError,
            "nope",
        ),
        (
            lambda s: (
                s.write_builder().add_items([{"_id": "x", "vector": [1.0] * 5}], vector_fields=["vector"]).execute()
            ),
            VectorDimensionError,
            "vector",
        ),
        (
            lambda s: (
                s.write_builder().add_items([{"_id": "x", "created_time": "soon"}], search_fields=["content"]).execute()
            ),
            StorageError,
            "created_time",
        ),
        (
            lambda s: s.write_builder().add_items([{"name": "no id"}], search_fields=["content"]).execute(),
            StorageError,
            "_id",
        ),
        (lambda s: s.write_builder().add_items([{"_id": "x"}]), StorageError, "vector_fields"),
        (lambda s: s.write_builder().add_items([{"_id": "x"}], vector_fields=["name"]), StorageError, "name"),
        (lambda s: s.write_builder().add_items([{"_id": "x"}], search_fields=["name"]), StorageError, "name"),
        (
            lambda s: (
                s.write_builder()
                .add_items([{"_id": "x", "vector": [float("nan")] * DIM}], vector_fields=["vector"])
                .execute()
            ),
            StorageError,
            "vector",
        ),
        (lambda s: s.query_builder().set_vector_query([0.1] * 3, "vector").execute(), VectorDimensionError, "vector"),
        (lambda s: s.query_builder().set_vector_query([0.1] * DIM, "name").execute(), StorageError, "name"),
        (lambda s: s.query_builder().set_search_query("x", ["raw_content"]).execute(), StorageError, "raw_content"),
        (lambda s: s.query_builder().sort("tags").execute(), StorageError, "tags"),
        (lambda s: s.query_builder().sort("missing").execute(), UnknownFieldError, "missing"),
        (lambda s: s.query_builder().sort("name", "sideways"), StorageError, "name"),
        (
            lambda s: s.query_builder().and_filter().add_condition("ghost", 1).build().execute(),
            UnknownFieldError,
            "ghost",
        ),
        (lambda s: s.query_builder().and_filter().add_condition("name", 1).build().execute(), StorageError, "name"),
        (
            lambda s: s.query_builder().and_filter().add_condition("name", "a", op="~").build().execute(),
            StorageError,
            "name",
        ),
        (lambda s: s.query_builder().set_limit(-1).execute(), StorageError, "limit"),
        (lambda s: s.schema_builder().add_field("f", "text"), StorageError, "f"),
        (lambda s: s.schema_builder().add_field("f", DataType.STRING, ["fuzzy"]), StorageError, "f"),
        (lambda s: s.schema_builder().add_field("f", DataType.LONG, [FieldOption.ANALYZE]), StorageError, "f"),
        (lambda s: s.schema_builder().add_field("bad name", DataType.LONG), StorageError, "field"),
        (
            lambda s: s.schema_builder().add_field("a", DataType.LONG).add_field("a", DataType.LONG).to_schema(),
            StorageError,
            "a",
        ),
    ],
)
def test_bad_input_errors_name_the_field(storage, build, exc, field):
    with pytest.raises(exc) as info:
        build(storage)
    assert info.value.param == field
    assert isinstance(info.value, InvalidRequestError)
    if field not in ("limit", "vector_fields", "field"):
        assert repr(field) in str(info.value) or field in str(info.value)
    assert storage.count() == len(TEXTS)  # nothing half-written


def test_unknown_enum_lists_accepted_values(storage):
    with pytest.raises(StorageError, match=r"DataType\.STRING.*DataType\.LONG"):
        storage.schema_builder().add_field("f", "text")


def test_invalid_names(tmp_path):
    with pytest.raises(StorageError, match="table"):
        ByzerStorage("c", "db", "drop table x;", base_dir=str(tmp_path))
    with pytest.raises(StorageError, match="database"):
        ByzerStorage("c", "../escape", "t", base_dir=str(tmp_path))


def test_write_before_create_names_the_table(tmp_path):
    s = ByzerStorage("c", "db", "nothing", base_dir=str(tmp_path))
    with pytest.raises(TableNotFoundError, match="nothing"):
        s.write_builder().add_items([{"_id": "1"}], search_fields=["content"])


def test_two_tables_share_a_file_and_see_each_others_writes(tmp_path):
    a = make(tmp_path, "alpha")
    b = make(tmp_path, "beta")
    assert a.path == b.path
    a.write_builder().add_items(rows(2), vector_fields=["vector"], search_fields=["content"]).execute()
    assert a.count() == 2 and b.count() == 0
    other = ByzerStorage("byzerai_store", "testdb", "alpha", base_dir=str(tmp_path))
    q = rows(2)[1]["vector"]
    assert ids(other.query_builder().set_vector_query(q, "vector").set_limit(1).execute()) == ["1"]
    a.write_builder().add_items([{**rows(2)[0], "vector": q}], vector_fields=["vector"]).execute()
    # the other connection's cached vectors are refreshed after the write
    assert set(ids(other.query_builder().set_vector_query(q, "vector").set_limit(2).execute())) == {"0", "1"}
    assert sorted(a.engine.list_tables()) == ["alpha", "beta"]
