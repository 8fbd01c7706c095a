"""``ByzerStorage``: tables with vector k-NN, BM25 full-text (Chinese segmented) and hybrid search.

The public names and call shapes are Byzer-LLM's ``byzerllm.apps.byzer_storage.simple_api``::

    storage = ByzerStorage("byzerai_store", "my_db", "docs", base_dir=tmp)
    storage.schema_builder().add_field("_id", DataType.STRING) \\
        .add_field("content", DataType.STRING, [FieldOption.ANALYZE]) \\
        .add_array_field("vector", DataType.FLOAT).execute()
    storage.write_builder().add_items(rows, vector_fields=["vector"], search_fields=["content"]).execute()
    storage.commit()
    storage.query_builder().set_vector_query(v, fields=["vector"]) \\
        .set_search_query("向量", fields=["content"]).set_limit(5).execute()

Data lives in ``<base_dir>/<cluster_name>/<database>.db`` (an embedded SQLite engine, see
``sqlite_engine.py``); ``base_dir`` defaults to ``$BYZERLLM_STORAGE_DIR`` or ``~/.byzerllm/storage``.
Or on a PostgreSQL server (``postgres_engine.py``: schema ``<database>``), chosen by
``storage_choice``: ``url=`` given, else ``$BYZERLLM_STORAGE_URL``, else the connection file that
``byzerllm storage start --engine postgres`` wrote in the cluster's folder.
Differences from Byzer-Retrieval: analyzed fields return their original text (segmentation only
feeds the index), and writes are durable when ``execute()`` returns (``commit()`` only checkpoints).
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import Any

from .engine import (
    Condition,
    FieldSpec,
    Filter,
    SearchRequest,
    StorageEngine,
    TableSchema,
    check_fusion,
    check_name,
)
from .errors import StorageError
from .text import segment

log = logging.getLogger("byzerllm.storage")

DEFAULT_CLUSTER = "byzerai_store"
DEFAULT_BATCH_SIZE = 1000


class DataType(Enum):
    """Field types, with Byzer-Retrieval's schema names as values."""

    STRING = "string"
    LONG = "long"
    FLOAT = "float"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    ARRAY = "array"
    MAP = "map"
    STRUCT = "st"


class FieldOption(Enum):
    """``ANALYZE``: BM25 full-text field; ``SORT``: indexed for sorting; ``NO_INDEX``: stored only."""

    ANALYZE = "analyze"
    SORT = "sort"
    NO_INDEX = "no_index"


class SortOption(Enum):
    DESC = "desc"
    ASC = "asc"


def default_base_dir() -> Path:
    """``$BYZERLLM_STORAGE_DIR`` when set, else ``~/.byzerllm/storage``."""
    return Path(os.environ.get("BYZERLLM_STORAGE_DIR") or Path.home() / ".byzerllm" / "storage").expanduser()


def database_path(cluster_name: str | None, database: str, base_dir: str | os.PathLike | None = None) -> Path:
    """Where a database lives: ``<base_dir>/<cluster_name>/<database>.db``."""
    base = Path(base_dir).expanduser() if base_dir else default_base_dir()
    return base / check_name("cluster", cluster_name or DEFAULT_CLUSTER) / f"{check_name('database', database)}.db"


URL_ENV = "BYZERLLM_STORAGE_URL"


def storage_choice(
    cluster_name: str | None, base_dir: str | os.PathLike | None = None, url: str | None = None
) -> tuple[str | None, str | None]:
    """``(url, source)``: the PostgreSQL URL a store uses and what chose it, or ``(None, None)``
    for the embedded SQLite engine. In this order: ``url`` when given (source ``"url="``),
    ``$BYZERLLM_STORAGE_URL`` (source ``"$BYZERLLM_STORAGE_URL"``), the ``url`` of
    ``<base_dir>/<cluster>/postgres.json`` written by ``byzerllm storage start --engine postgres``
    (source: that file's path). Raises ``StorageError`` (``param="url"``) for a URL that is not
    ``postgresql://...`` (shown with its password masked), ``StorageServerError`` for a
    connection file without a URL."""
    from .postgres_server import CONN_FILE, mask_url, read_connection_file

    if url:
        chosen, source = url, "url="
    elif os.environ.get(URL_ENV):
        chosen, source = os.environ[URL_ENV], f"${URL_ENV}"
    else:
        base = Path(base_dir).expanduser() if base_dir else default_base_dir()
        folder = base / check_name("cluster", cluster_name or DEFAULT_CLUSTER)
        found = read_connection_file(folder)
        return (found, str(folder / CONN_FILE)) if found else (None, None)
    if not isinstance(chosen, str) or not chosen.startswith(("postgresql://", "postgres://")):
        raise StorageError(
            f"field 'url': the store's server URL must start with postgresql://, got {mask_url(str(chosen))!r} "
            f"(from {source})",
            param="url",
        )
    return chosen, source


def storage_url(
    cluster_name: str | None, base_dir: str | os.PathLike | None = None, url: str | None = None
) -> str | None:
    """The PostgreSQL URL a store uses, or None for the embedded SQLite engine: the URL of
    ``storage_choice`` (``url``, else ``$BYZERLLM_STORAGE_URL``, else the cluster's connection
    file); raises as it does."""
    return storage_choice(cluster_name, base_dir, url)[0]


_warned: set[tuple[str, str]] = set()


def warn_unused_sqlite(path: Path, url: str, source: str | None) -> bool:
    """Log a WARNING (logger ``byzerllm.storage``) when the SQLite file ``path`` exists while
    the store uses the PostgreSQL server at ``url`` (named with its password masked): the
    file's tables are not visible there. Once per file and URL in a process; True when logged."""
    from .postgres_server import mask_url

    key = (str(path), url)
    if key in _warned or not path.exists():
        return False
    _warned.add(key)
    log.warning(
        "database %r of cluster %r: using the PostgreSQL server %s (chosen by %s), not the SQLite file %s, "
        "which exists too: its tables are not visible on the server. The engine is chosen by url=, then $%s, "
        "then the cluster's postgres.json; engine=SqliteEngine(path) opens the file.",
        path.stem,
        path.parent.name,
        mask_url(url),
        source or "url=",
        path,
        URL_ENV,
    )
    return True


def _enum(value: Any, enum: type[Enum], what: str, field: str) -> Enum:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        accepted = ", ".join(f"{enum.__name__}.{m.name}" for m in enum)
        raise StorageError(f"field {field!r}: unknown {what} {value!r}; accepted: {accepted}", param=field) from None


class SchemaBuilder:
    """Declare the fields of the table, then ``execute()`` creates it (False if it exists).

    ``distance_metric`` (``"cosine"`` or ``"l2"``) applies to every vector field of the table.
    A vector field is ``add_array_field(name, DataType.FLOAT)`` (or DOUBLE; stored as float32);
    its dimension is fixed by the first vector written. ``_id`` (STRING) is added when missing.
    """

    def __init__(self, storage: ByzerStorage) -> None:
        self.storage = storage
        self.fields: list[FieldSpec] = []
        self.distance_metric = "cosine"
        self.num_shards = 1  # accepted for compatibility; the embedded engine has one shard
        self.location = ""

    def _add(self, name: str, kind: str, options: list[FieldOption] | None, type_text: str) -> SchemaBuilder:
        opts = {_enum(o, FieldOption, "FieldOption", name) for o in (options or [])}
        self.fields.append(
            FieldSpec(
                name,
                kind,
                analyze=FieldOption.ANALYZE in opts,
                sort=FieldOption.SORT in opts,
                no_index=FieldOption.NO_INDEX in opts,
                type_text=type_text,
            )
        )
        return self

    def add_field(self, name: str, data_type: DataType, options: list[FieldOption] | None = None) -> SchemaBuilder:
        dt = _enum(data_type, DataType, "DataType", name)
        if dt in (DataType.ARRAY, DataType.MAP, DataType.STRUCT):
            raise StorageError(
                f"field {name!r}: use add_array_field / add_map_field / add_struct_field for {dt.name}", param=name
            )
        return self._add(name, dt.value, options, dt.value)

    def add_array_field(
        self, name: str, element_type: DataType, options: list[FieldOption] | None = None
    ) -> SchemaBuilder:
        et = _enum(element_type, DataType, "DataType", name)
        kind = "vector" if et in (DataType.FLOAT, DataType.DOUBLE) else "json"
        return self._add(name, kind, options, f"array({et.value})")

    def add_map_field(
        self, name: str, key_type: DataType, value_type: DataType, options: list[FieldOption] | None = None
    ) -> SchemaBuilder:
        kt = _enum(key_type, DataType, "DataType", name)
        vt = _enum(value_type, DataType, "DataType", name)
        return self._add(name, "json", options, f"map({kt.value},{vt.value})")

    def add_struct_field(
        self, name: str, struct_builder: SchemaBuilder, options: list[FieldOption] | None = None
    ) -> SchemaBuilder:
        return self._add(name, "json", options, struct_builder.build())

    def build(self) -> str:
        """The schema in Byzer-Retrieval's text form, e.g. ``st(field(_id,string),field(v,array(float)))``."""
        parts = []
        for f in self.fields:
            opts = [o for o, on in (("analyze", f.analyze), ("sort", f.sort), ("no_index", f.no_index)) if on]
            parts.append(f"field({','.join([f.name, f.type_text, *opts])})")
        return f"st({','.join(parts)})"

    def to_schema(self) -> TableSchema:
        return TableSchema(fields=tuple(self.fields), metric=self.distance_metric)

    def execute(self) -> bool:
        return self.storage.engine.create_table(self.storage.table, self.to_schema())


class WriteBuilder:
    """Collect rows, then ``execute()`` upserts them by ``_id`` in batches of ``batch_size``, each
    batch one transaction. ``vector_fields`` given as text are embedded with ``storage.emb``
    (one batched embedding call per batch); vectors given as lists of floats are stored as they are.
    ``search_fields`` are the full-text fields (segmentation happens in the engine; the stored text
    stays as given). Items are copied: the caller's dicts are not changed."""

    def __init__(self, storage: ByzerStorage, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.storage = storage
        self.batch_size = batch_size
        self.data: list[dict[str, Any]] = []
        self._vector_fields: set[str] = set()

    def add_item(
        self, item: dict[str, Any], vector_fields: list[str] | None = None, search_fields: list[str] | None = None
    ) -> WriteBuilder:
        return self.add_items([item], vector_fields, search_fields)

    def add_items(
        self,
        items: list[dict[str, Any]],
        vector_fields: list[str] | None = None,
        search_fields: list[str] | None = None,
    ) -> WriteBuilder:
        if not vector_fields and not search_fields:
            raise StorageError("at least one of vector_fields or search_fields is required", param="vector_fields")
        schema = self.storage.engine.get_schema(self.storage.table)
        for name in vector_fields or []:
            if schema.field(name).kind != "vector":
                raise StorageError(
                    f"field {name!r} in vector_fields is not a vector field "
                    "(declare it with add_array_field(name, DataType.FLOAT))",
                    param=name,
                )
        for name in search_fields or []:
            if not schema.field(name).analyze:
                raise StorageError(
                    f"field {name!r} in search_fields is not a full-text field (declare it with FieldOption.ANALYZE)",
                    param=name,
                )
        self._vector_fields.update(vector_fields or [])
        self.data.extend(dict(item) for item in items)
        return self

    def execute(self) -> bool:
        for start in range(0, len(self.data), self.batch_size):
            batch = self.data[start : start + self.batch_size]
            for name in self._vector_fields:
                texts = [(i, row[name]) for i, row in enumerate(batch) if isinstance(row.get(name), str)]
                if texts:
                    vectors = self.storage.emb_batch([t for _, t in texts])
                    for (i, _), v in zip(texts, vectors, strict=True):
                        batch[i][name] = v
            self.storage.engine.upsert(self.storage.table, batch)
        self.data = []
        return True


class FilterBuilder:
    """Conditions ``add_condition(field, value)`` (equality; ``op`` may be ``!=, <, <=, >, >=, in``);
    ``build()`` sets them on the query and returns the query builder."""

    mode = "and"

    def __init__(self, query_builder: QueryBuilder) -> None:
        self.query_builder = query_builder
        self.conditions: list[Condition] = []

    def add_condition(self, field: str, value: Any, op: str = "=") -> FilterBuilder:
        self.conditions.append(Condition(field, value, op))
        return self

    def build(self) -> QueryBuilder:
        self.query_builder.filters = Filter(self.mode, tuple(self.conditions))
        return self.query_builder


class AndBuilder(FilterBuilder):
    mode = "and"


class OrBuilder(FilterBuilder):
    mode = "or"


class QueryBuilder:
    """A query: ``set_vector_query`` (k-NN), ``set_search_query`` (BM25), both (hybrid: fused by
    RRF with k = 60, or by ``set_fusion("convex")``), or neither (filter + sort). ``execute()``
    returns up to ``limit`` (default 10) rows as dicts with a ``_score`` (higher is better); with
    ``sort`` the selected rows are then ordered by the sort keys. Vector fields are returned only
    when named in ``set_fields``."""

    def __init__(self, storage: ByzerStorage) -> None:
        self.storage = storage
        self.keyword: str | None = None
        self.search_fields: list[str] = []
        self.vector: list[float] = []
        self.vector_field: str | None = None
        self.filters: Filter | None = None
        self.fields: list[str] = []
        self.limit = 10
        self.sorts: list[tuple[str, str]] = []
        self.candidates: int | None = None
        self.rrf_k = 60
        self.fusion = "rrf"

    @staticmethod
    def _names(fields: list[str] | str) -> list[str]:
        return [f.strip() for f in fields.split(",")] if isinstance(fields, str) else list(fields)

    def set_search_query(self, query: str, fields: list[str] | str) -> QueryBuilder:
        if not isinstance(query, str):
            raise StorageError(f"search query must be a string, got {type(query).__name__}", param="query")
        self.keyword = query
        self.search_fields = self._names(fields)
        return self

    def set_vector_query(self, query: list[float] | str, fields: list[str] | str) -> QueryBuilder:
        self.vector = self.storage.emb(query) if isinstance(query, str) else query
        names = self._names(fields)
        if not names:
            raise StorageError("set_vector_query needs a vector field", param="fields")
        self.vector_field = names[0]
        return self

    def and_filter(self) -> AndBuilder:
        return AndBuilder(self)

    def or_filter(self) -> OrBuilder:
        return OrBuilder(self)

    def sort(self, field: str, order: SortOption = SortOption.DESC) -> QueryBuilder:
        self.sorts.append((field, _enum(order, SortOption, "SortOption", field).value))
        return self

    add_sort = sort

    def set_fields(self, fields: list[str]) -> QueryBuilder:
        self.fields = self._names(fields)
        return self

    def set_limit(self, limit: int) -> QueryBuilder:
        self.limit = limit
        return self

    def set_candidates(self, n: int) -> QueryBuilder:
        """Results each method contributes to a hybrid fusion (default ``max(4 * limit, 50)``)."""
        self.candidates = n
        return self

    def set_fusion(self, name: str) -> QueryBuilder:
        """How a hybrid query fuses its k-NN and BM25 rankings: ``"rrf"`` (the default: reciprocal
        rank fusion, ``_score = sum 1 / (60 + rank)``, ranks only) or ``"convex"`` (each method's
        scores min-max normalised to [0, 1] over its candidates and added, ``_score`` in [0, 2];
        Bruch et al. 2023). Ignored by a query that is not hybrid. Raises ``StorageError``
        (``param="fusion"``) for another name."""
        self.fusion = check_fusion(name)
        return self

    def request(self) -> SearchRequest:
        has_vector = self.vector is not None and len(self.vector) > 0
        return SearchRequest(
            vector=self.vector if has_vector else None,
            vector_field=self.vector_field,
            keyword=self.keyword,
            search_fields=self.search_fields,
            filter=self.filters,
            sorts=self.sorts,
            limit=self.limit,
            fields=self.fields,
            candidates=self.candidates,
            rrf_k=self.rrf_k,
            fusion=self.fusion,
        )

    def execute(self) -> list[dict[str, Any]]:
        return self.storage.engine.search(self.storage.table, self.request())

    def delete(self) -> int:
        """Delete the rows matching the filter (only a filter, no search); returns how many."""
        if not self.filters or self.keyword or self.vector_field:
            raise StorageError("delete() needs a filter and no search query", param="filter")
        return self.storage.engine.delete_by_filter(self.storage.table, self.filters)


class ByzerStorage:
    """One table of a database in the built-in store.

    ``cluster_name`` (default ``byzerai_store``) and ``database`` choose the file
    ``<base_dir>/<cluster_name>/<database>.db``; the table need not exist until
    ``schema_builder().execute()``. ``emb_model`` is the embedding deployment used by ``emb`` (and for
    text given in ``vector_fields``); it is reached through ``byzerllm.ByzerLLM`` on the Ray cluster at
    ``ray_address`` only when text is embedded. ``engine`` lets tests replace the engine.

    The engine is PostgreSQL (schema ``<database>`` on the server; ``PostgresEngine``) when, in
    this order, ``url="postgresql://user:password@host:port/db"`` is given, ``$BYZERLLM_STORAGE_URL``
    is set, or the cluster's folder holds the connection file ``postgres.json`` of
    ``byzerllm storage start --engine postgres``; else the embedded SQLite file. ``self.url`` is
    the URL used (None for SQLite). When PostgreSQL is chosen and the SQLite file of the same
    cluster and database exists too, a WARNING (logger ``byzerllm.storage``) names both. Raises
    ``StorageError`` for invalid names or URL, and ``StorageServerError`` when the server cannot
    be reached.
    """

    def __init__(
        self,
        cluster_name: str | None,
        database: str,
        table: str,
        base_dir: str | None = None,
        ray_address: str = "auto",
        emb_model: str = "emb",
        engine: StorageEngine | None = None,
        url: str | None = None,
    ) -> None:
        self.cluster_name = cluster_name or DEFAULT_CLUSTER
        self.database = check_name("database", database)
        self.table = check_name("table", table)
        self.emb_model = emb_model
        self.ray_address = ray_address
        self.path = database_path(self.cluster_name, database, base_dir)
        self.base_dir = str(self.path.parent.parent)
        self.url, source = storage_choice(self.cluster_name, base_dir, url) if engine is None else (None, None)
        if engine is None and self.url is not None:
            from .postgres_engine import PostgresEngine

            warn_unused_sqlite(self.path, self.url, source)
            engine = PostgresEngine(self.url, self.database)
        elif engine is None:
            from .sqlite_engine import SqliteEngine

            engine = SqliteEngine(self.path)
        self.engine = engine
        self._llm = None

    # --- builders ------------------------------------------------------------------------------
    def schema_builder(self) -> SchemaBuilder:
        return SchemaBuilder(self)

    def write_builder(self) -> WriteBuilder:
        return WriteBuilder(self)

    def query_builder(self) -> QueryBuilder:
        return QueryBuilder(self)

    # --- embeddings ----------------------------------------------------------------------------
    @property
    def llm(self):
        """The ``byzerllm.ByzerLLM`` client whose default embedding model is ``emb_model``."""
        if self._llm is None:
            from ...client import ByzerLLM
            from ...runtime.cluster import connect_cluster

            connect_cluster(self.ray_address)
            self._llm = ByzerLLM().setup_default_emb_model_name(self.emb_model)
        return self._llm

    def emb(self, s: str) -> list[float]:
        """The embedding of ``s`` by deployment ``emb_model`` (a list of floats; the dimension is the
        model's). Raises ``ModelNotFoundError`` when no such deployment runs (start one with
        ``byzerllm storage start --enable_emb``)."""
        return list(self.llm.emb_query(s)[0].output)

    def emb_batch(self, texts: list[str]) -> list[list[float]]:
        """Embeddings of ``texts`` in one call to ``emb_model``, in order."""
        return [list(r.output) for r in self.llm.emb(None, texts)]

    def tokenize(self, s: str) -> str:
        """``s`` segmented for full-text search (Chinese runs split into words by jieba)."""
        return " ".join(segment(s).split())

    # --- table operations ----------------------------------------------------------------------
    def commit(self) -> bool:
        """Writes are committed when ``execute()`` returns; this checkpoints SQLite's write-ahead
        log (nothing to do on PostgreSQL)."""
        self.engine.checkpoint()
        return True

    def delete_by_ids(self, ids: list[str | int]) -> int:
        return self.engine.delete_by_ids(self.table, ids)

    def delete_by_id(self, _id: str | int) -> int:
        return self.engine.delete_by_ids(self.table, [_id])

    def truncate_table(self) -> None:
        self.engine.truncate(self.table)

    def drop(self) -> bool:
        return self.engine.drop(self.table)

    def table_exists(self) -> bool:
        return self.engine.table_exists(self.table)

    def count(self) -> int:
        return self.engine.count(self.table)

    def close(self) -> None:
        self.engine.close()


class LocalByzerStorage(ByzerStorage):
    """Byzer-LLM's client of a retrieval server on ``host:port`` that embeds with the client object
    ``emb_llm`` (e.g. ``SimpleByzerLLM(default_model_name="emb")``). The store here is embedded
    (SQLite in ``database_path(cluster_name, database)``), so there is no server to reach: ``host``
    and ``port`` are kept and not used. Methods and errors as ``ByzerStorage``."""

    def __init__(
        self,
        cluster_name: str | None,
        database: str,
        table: str,
        host: str = "localhost",
        port: int = 33333,
        emb_llm: Any = None,
    ) -> None:
        super().__init__(cluster_name, database, table)
        self.host, self.port = host, port
        self._llm = emb_llm
