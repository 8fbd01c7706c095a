"""The server engine: one PostgreSQL schema per store database, pgvector for k-NN, full-text
search with BM25 computed in SQL over ``tsvector`` postings.

In the schema of database ``db``, per table ``t``:

- ``t$rows``: one row per ``_id`` (``"$rid"`` an identity key, scalar fields as columns, text
  ``COLLATE "C"`` so strings compare byte-wise as in SQLite, arrays/maps/structs as ``json``),
  vector fields as pgvector ``vector(dim)`` columns with an HNSW index (``vector_cosine_ops`` or
  ``vector_l2_ops``: the table's metric), created when the first vector fixes the dimension;
- per analyzed field ``f``: ``$tsv$f`` (a ``tsvector`` with a GIN index: which rows hold a term)
  and ``$tf$f`` (``jsonb``, term -> occurrences: the term frequencies BM25 needs), plus ``$len``,
  the row's number of tokens over all analyzed fields;
- ``t$df``: term -> number of rows holding it; with the row count and token total kept in
  ``_byzer_tables`` these are BM25's document frequencies and average length.

Text goes through the same steps as in the SQLite engine before PostgreSQL sees it: Chinese runs
segmented by jieba (``text.segment``), lower-cased, Latin diacritics removed, split into words;
the text search configuration ``byzer_text`` then stems English words (Snowball, no stop words:
as FTS5's porter tokenizer). Scores are Okapi BM25 as FTS5 computes it (k1 = 1.2, b = 0.75,
idf = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6), returned positive (higher is better).
Document frequencies count rows holding a term in any analyzed field.

Every write is one transaction that first locks the table's row in ``_byzer_tables`` (writers of
one table take turns; readers never wait): a client killed mid-write leaves nothing of it.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from . import text as textmod
from .engine import (
    SCALAR_KINDS,
    Filter,
    SearchRequest,
    StorageEngine,
    TableSchema,
    check_name,
)
from .errors import StorageError, StorageIntegrityError, StorageServerError, TableNotFoundError, VectorDimensionError
from .postgres_server import mask_url
from .values import (
    conditions,
    from_db,
    fuse,
    plan_search,
    prepare_rows,
    query_vector,
    sort_rows,
    text_fields,
    vector_field,
)

SQL_TYPES = {
    "string": 'text COLLATE "C"',
    "long": "bigint",
    "float": "double precision",
    "double": "double precision",
    "boolean": "boolean",
    "json": "json",
}
FTS_BUDGET = 3000  # documents BM25 may score per query before common terms are left out
EF_SEARCH = 100  # HNSW candidate list per query (pgvector's default is 40): recall vs time
HNSW_MAX_DIM = 2000  # pgvector indexes up to 2,000 dimensions; above, k-NN scans exactly
MAX_ID_BYTES = 2000  # "_id" has a unique B-tree index, whose entries hold at most ~2.7 kB
INDEX_PREFIX = 256  # string fields are indexed on their first 256 characters (B-tree size limit)
K1, B = 1.2, 0.75
PG_IDENT_MAX = 63
_LATIN_END = 0x0370  # combining marks after a base below this (Latin, IPA) are diacritics to drop


def q(name: str) -> str:
    """A quoted SQL identifier, hashed down to PostgreSQL's 63 bytes when longer."""
    if len(name.encode()) > PG_IDENT_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = name.encode()[: PG_IDENT_MAX - 13].decode(errors="ignore") + "$" + digest
    return '"' + name.replace('"', '""') + '"'


def fold(s: str) -> str:
    """``s`` without diacritics on Latin letters (``café`` -> ``cafe``), as FTS5's
    ``remove_diacritics 2``; other scripts unchanged."""
    if s.isascii():
        return s
    out, base = [], 0
    for c in unicodedata.normalize("NFD", s):
        if unicodedata.combining(c):
            if base < _LATIN_END:
                continue
        else:
            base = ord(c)
        out.append(c)
    return unicodedata.normalize("NFC", "".join(out))


_WORD = re.compile(r"[^\W_]+")


def tokens(s: str) -> list[str]:
    """The words of ``s`` as this engine indexes them (as FTS5's tokenizer splits them in the
    SQLite engine): Chinese runs segmented by jieba, lower-cased, Latin diacritics removed;
    runs of letters and digits only."""
    return _WORD.findall(fold(textmod.segment(s)).lower())


def query_words(s: str) -> list[str]:
    """The distinct words of a query, in order, at most ``text.MAX_QUERY_TERMS``."""
    return list(dict.fromkeys(tokens(s)))[: textmod.MAX_QUERY_TERMS]


def _idf(docs: int, n: int) -> float:
    """BM25's inverse document frequency as FTS5 computes it (at least 1e-6)."""
    idf = math.log((docs - n + 0.5) / (n + 0.5))
    return idf if idf > 0 else 1e-6


def _tsquery(lexemes: list[str], op: str) -> str:
    return f" {'&' if op == 'AND' else '|'} ".join(
        "'" + x.replace("\\", "\\\\").replace("'", "''") + "'" for x in lexemes
    )


def connect(url: str, timeout: float = 10) -> Any:
    """An autocommit psycopg connection to ``url``; raises ``StorageServerError`` (password
    masked) when the server cannot be reached, ``ImportError`` without the ``postgres`` extra."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError('the PostgreSQL engine needs `pip install "byzerllm[postgres]"` (psycopg, pgvector)') from exc
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.OperationalError as exc:
        detail = str(exc).replace(url, mask_url(url)).strip().splitlines()
        raise StorageServerError(
            f"cannot connect to the store's PostgreSQL server {mask_url(url)}: "
            f"{detail[-1] if detail else exc} (start one with `byzerllm storage start --engine postgres`)",
            url=mask_url(url),
        ) from None


def list_databases(url: str) -> list[str]:
    """The store databases on the server at ``url``: the schemas holding a ``_byzer_tables``."""
    with connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = '_byzer_tables' "
                "ORDER BY table_schema"
            )
        ]


class PostgresEngine(StorageEngine):
    """The tables of database ``database``: schema ``database`` on the PostgreSQL server at ``url``
    (``postgresql://user:password@host:port/dbname``; created with its objects when missing:
    the user needs the CREATE privilege on the database, and the ``vector`` extension must exist
    in it or the user must be a superuser, who may create it).

    Safe to share between threads of one process (a lock serialises calls; one connection, opened
    again when it broke). ``ef_search``: HNSW candidates per k-NN query (at least the number of
    rows asked for); ``fts_budget``: documents BM25 may score per query before the most frequent
    query terms are left out (see ``text.affordable_terms``; 0 = never). Raises
    ``StorageServerError`` when the server cannot be reached (the password masked in the message).
    """

    def __init__(
        self,
        url: str,
        database: str,
        ef_search: int = EF_SEARCH,
        fts_budget: int = FTS_BUDGET,
        connect_timeout: float = 10,
    ) -> None:
        self.url = url
        self.database = check_name("database", database)
        self.ns = q(database)
        self.ts_config = f"'{self.ns.replace(chr(39), chr(39) * 2)}.byzer_text'::regconfig"
        self.ef_search, self.fts_budget = ef_search, fts_budget
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn: Any = None
        self._ef = 0
        self._schemas: dict[str, tuple[str, TableSchema]] = {}
        with self._lock:
            self._connect()

    # --- plumbing ------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """Where the tables live, for messages: the schema and the URL without its password."""
        return f"schema {self.database} of {mask_url(self.url)}"

    def _connect(self) -> Any:
        import psycopg
        from pgvector.psycopg.vector import register_vector_info
        from psycopg.types import TypeInfo

        conn = connect(self.url, self.connect_timeout)
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                conn.close()
                raise StorageServerError(
                    f"the database of {mask_url(self.url)} has no pgvector extension and this user cannot create "
                    f"it: {str(exc).strip()} (a superuser runs CREATE EXTENSION vector in it; `byzerllm storage start "
                    "--engine postgres` does for its own server)",
                    url=mask_url(self.url),
                ) from None
        register_vector_info(conn, TypeInfo.fetch(conn, "vector"))
        conn.execute("SET jit = off")  # JIT compiling a short query costs more than running it
        conn.execute("SET random_page_cost = 1.1")  # index pages are cached: prefer the GIN index to a scan
        conn.execute("SET hnsw.iterative_scan = strict_order")  # filtered k-NN still returns k rows
        self._conn, self._ef = conn, 0
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"byzerllm:{self.database}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.ns}")
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS {self.ns}._byzer_tables (name text COLLATE "C" PRIMARY KEY, '
                "schema text NOT NULL, docs bigint NOT NULL DEFAULT 0, tokens bigint NOT NULL DEFAULT 0, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            )
            found = conn.execute(
                "SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace "
                "WHERE n.nspname = %s AND c.cfgname = 'byzer_text'",
                (self.ns[1:-1].replace('""', '"'),),
            ).fetchone()
            if found is None:
                # 'simple' (lower-case, no stop words) with English Snowball stemming for ASCII words
                conn.execute(
                    f"CREATE TEXT SEARCH DICTIONARY {self.ns}.byzer_english (TEMPLATE = snowball, Language = english)"
                )
                conn.execute(f"CREATE TEXT SEARCH CONFIGURATION {self.ns}.byzer_text (COPY = simple)")
                conn.execute(
                    f"ALTER TEXT SEARCH CONFIGURATION {self.ns}.byzer_text ALTER MAPPING FOR asciiword, "
                    f"asciihword, hword_asciipart WITH {self.ns}.byzer_english"
                )
        return conn

    def _cx(self) -> Any:
        """The connection, opened again when the previous one broke (server restart)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._connect()
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            conn = self._cx()
            try:
                with conn.transaction():
                    yield conn
            except BaseException:
                self._schemas.clear()
                raise

    def _t(self, table: str, suffix: str = "rows") -> str:
        return f"{self.ns}.{q(f'{table}${suffix}')}"

    def _read_schema(self, conn: Any, table: str, lock: bool = False) -> tuple[TableSchema, int, int]:
        """The table's schema, row count and token total (``FOR UPDATE``: locked for a write)."""
        check_name("table", table)
        row = conn.execute(
            f"SELECT schema, docs, tokens FROM {self.ns}._byzer_tables WHERE name = %s"
            + (" FOR UPDATE" if lock else ""),
            (table,),
        ).fetchone()
        if row is None:
            tables = self.list_tables()
            raise TableNotFoundError(
                f"table {table!r} does not exist in {self.where}; tables: {', '.join(tables) or '(none)'}"
                " (create it with schema_builder()...execute())",
                param="table",
                available=tables,
            )
        cached = self._schemas.get(table)
        if cached is None or cached[0] != row[0]:
            cached = (row[0], TableSchema.from_json(row[0]))
            self._schemas[table] = cached
        return cached[1], row[1], row[2]

    # --- tables --------------------------------------------------------------------------------
    def create_table(self, table: str, schema: TableSchema) -> bool:
        check_name("table", table)
        with self._tx() as conn:
            added = conn.execute(
                f"INSERT INTO {self.ns}._byzer_tables (name, schema) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING "
                "RETURNING name",
                (table, schema.to_json()),
            ).fetchone()
            if added is None:
                return False
            self._create_objects(conn, table, schema)
        return True

    def _create_objects(self, conn: Any, table: str, schema: TableSchema) -> None:
        rows = self._t(table)
        cols = ['"$rid" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY', '"_id" text COLLATE "C" NOT NULL UNIQUE']
        for f in schema.fields:
            if f.name == "_id":
                continue
            cols.append(f"{q(f.name)} {'vector' if f.kind == 'vector' else SQL_TYPES[f.kind]}")
        if schema.analyzed:
            cols.append('"$len" integer NOT NULL DEFAULT 0')
            for f in schema.analyzed:
                cols += [f"{q('$tsv$' + f.name)} tsvector", f"{q('$tf$' + f.name)} jsonb"]
        conn.execute(f"CREATE TABLE {rows} ({', '.join(cols)})")
        for f in schema.fields:
            if f.kind in SCALAR_KINDS and f.name != "_id" and not f.analyze and not f.no_index:
                expr = f"left({q(f.name)}, {INDEX_PREFIX})" if f.kind == "string" else q(f.name)
                conn.execute(f"CREATE INDEX {q(f'{table}$ix${f.name}')} ON {rows} (({expr}))")
        for f in schema.analyzed:
            # fastupdate off: no pending list that every search would scan until a vacuum merges it
            conn.execute(
                f"CREATE INDEX {q(f'{table}$gin${f.name}')} ON {rows} USING gin ({q('$tsv$' + f.name)}) "
                "WITH (fastupdate = off)"
            )
        if schema.analyzed:
            conn.execute(
                f'CREATE TABLE {self._t(table, "df")} (lexeme text COLLATE "C" PRIMARY KEY, n bigint NOT NULL)'
            )
        for f in schema.of_kind("vector"):
            if f.dim:
                self._create_vector_index(conn, table, f.name, f.dim, schema.metric)

    def _create_vector_index(self, conn: Any, table: str, field: str, dim: int, metric: str) -> None:
        conn.execute(f"ALTER TABLE {self._t(table)} ALTER COLUMN {q(field)} TYPE vector({int(dim)})")
        if dim <= HNSW_MAX_DIM:
            ops = "vector_cosine_ops" if metric == "cosine" else "vector_l2_ops"
            conn.execute(f"CREATE INDEX {q(f'{table}$hnsw${field}')} ON {self._t(table)} USING hnsw ({q(field)} {ops})")

    def table_exists(self, table: str) -> bool:
        check_name("table", table)
        with self._lock:
            return (
                self._cx().execute(f"SELECT 1 FROM {self.ns}._byzer_tables WHERE name = %s", (table,)).fetchone()
                is not None
            )

    def get_schema(self, table: str) -> TableSchema:
        with self._lock:
            return self._read_schema(self._cx(), table)[0]

    def list_tables(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._cx().execute(f"SELECT name FROM {self.ns}._byzer_tables ORDER BY name")]

    def count(self, table: str) -> int:
        with self._lock:
            conn = self._cx()
            self._read_schema(conn, table)
            return conn.execute(f"SELECT count(*) FROM {self._t(table)}").fetchone()[0]

    def truncate(self, table: str) -> None:
        with self._tx() as conn:
            schema, _, _ = self._read_schema(conn, table, lock=True)
            names = [self._t(table)] + ([self._t(table, "df")] if schema.analyzed else [])
            conn.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")
            conn.execute(f"UPDATE {self.ns}._byzer_tables SET docs = 0, tokens = 0 WHERE name = %s", (table,))

    def drop(self, table: str) -> bool:
        check_name("table", table)
        with self._tx() as conn:
            gone = conn.execute(f"DELETE FROM {self.ns}._byzer_tables WHERE name = %s RETURNING name", (table,))
            if gone.fetchone() is None:
                return False
            conn.execute(f"DROP TABLE IF EXISTS {self._t(table)}, {self._t(table, 'df')}")
        self._schemas.pop(table, None)
        return True

    # --- writes --------------------------------------------------------------------------------
    def _keys(self, schema: TableSchema, alias: str) -> str:
        """A LATERAL subquery listing the distinct terms of row ``alias`` over its analyzed fields."""
        parts = [f"SELECT jsonb_object_keys({alias}.{q('$tf$' + f.name)})" for f in schema.analyzed]
        return "(" + " UNION ".join(parts) + ")"

    def _forget_rows(self, conn: Any, table: str, schema: TableSchema, source: str, params: Sequence[Any]) -> tuple:
        """Take the rows selected by ``source`` (a query returning whole rows of ``t$rows``) out of
        the BM25 statistics; returns ``(rows, tokens, terms whose count reached 0)``."""
        if not schema.analyzed:
            return conn.execute(f"WITH o AS ({source}) SELECT count(*), 0, '{{}}'::text[] FROM o", params).fetchone()
        df = self._t(table, "df")
        return conn.execute(
            f"WITH o AS ({source}), "
            f"d AS (INSERT INTO {df} (lexeme, n) SELECT k.lex, -count(*) FROM o CROSS JOIN LATERAL "
            f"{self._keys(schema, 'o')} k(lex) GROUP BY k.lex ORDER BY k.lex "
            f"ON CONFLICT (lexeme) DO UPDATE SET n = {df}.n + excluded.n RETURNING lexeme, n) "
            'SELECT (SELECT count(*) FROM o), (SELECT coalesce(sum(o."$len"), 0) FROM o), '
            "(SELECT coalesce(array_agg(lexeme), '{}') FROM d WHERE n <= 0)",
            params,
        ).fetchone()

    def _count_terms(self, conn: Any, table: str, schema: TableSchema, ids: list[str]) -> None:
        df = self._t(table, "df")
        conn.execute(
            f"INSERT INTO {df} (lexeme, n) SELECT k.lex, count(*) FROM {self._t(table)} r CROSS JOIN LATERAL "
            f"{self._keys(schema, 'r')} k(lex) WHERE r._id = ANY(%s) GROUP BY k.lex ORDER BY k.lex "
            f"ON CONFLICT (lexeme) DO UPDATE SET n = {df}.n + excluded.n",
            (ids,),
        )

    def _stats(self, conn: Any, table: str, schema: TableSchema, rows: int, tokens: int, zeros: list[str]) -> None:
        if zeros:
            conn.execute(f"DELETE FROM {self._t(table, 'df')} WHERE lexeme = ANY(%s) AND n <= 0", (zeros,))
        conn.execute(
            f"UPDATE {self.ns}._byzer_tables SET docs = docs + %s, tokens = tokens + %s WHERE name = %s",
            (rows, tokens, table),
        )

    def upsert(self, table: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        current = self.get_schema(table)
        checked = prepare_rows(current, rows)
        kinds = {f.name: f.kind for f in current.fields}
        for row in checked.rows:
            _check_pg_values(checked.names, kinds, row)
        ids = [r[0] for r in checked.rows]
        with self._tx() as conn:
            schema, _, _ = self._read_schema(conn, table, lock=True)
            for name, dim in checked.new_dims.items():
                current = schema.field(name).dim
                if current and current != dim:  # another client fixed the dimension meanwhile
                    raise VectorDimensionError(
                        f"field {name!r} is {current}-dim; got {dim}-dim vectors", param=name, expected=current, got=dim
                    )
                if not current:
                    self._create_vector_index(conn, table, name, dim, schema.metric)
                    schema = schema.with_dim(name, dim)
            if checked.new_dims:
                conn.execute(
                    f"UPDATE {self.ns}._byzer_tables SET schema = %s WHERE name = %s", (schema.to_json(), table)
                )
            old_rows, old_tokens, zeros = self._forget_rows(
                conn, table, schema, f"SELECT * FROM {self._t(table)} WHERE _id = ANY(%s)", (ids,)
            )
            analyzed = [f.name for f in schema.analyzed]
            vec_names = list(checked.vectors)
            cols = [*checked.names, *vec_names]
            select = ["%s::json" if kinds[n] == "json" else f"%s::{_cast(kinds[n])}" for n in checked.names]
            select += ["%s::vector" for _ in vec_names]
            target = [q(n) for n in cols]
            source = ""
            if analyzed:
                select.append("%s::integer")
                target.append('"$len"')
                for i, name in enumerate(analyzed):
                    tf = f"(SELECT jsonb_object_agg(lexeme, cardinality(positions)) FROM unnest(x.t{i}))"
                    select += [f"strip(x.t{i})", f"coalesce({tf}, '{{}}')"]
                    target += [q("$tsv$" + name), q("$tf$" + name)]
                vectors = ", ".join(f"to_tsvector({self.ts_config}, %s::text) AS t{i}" for i in range(len(analyzed)))
                source = f" FROM (SELECT {vectors}) x"
            updates = ", ".join(f"{t} = excluded.{t}" for t in target[1:]) or '"_id" = excluded."_id"'
            sql = (
                f"INSERT INTO {self._t(table)} ({', '.join(target)}) SELECT {', '.join(select)}{source} "
                f"ON CONFLICT (_id) DO UPDATE SET {updates}"
            )
            positions = [checked.names.index(n) for n in analyzed]
            params, new_tokens = [], 0
            booleans = [i for i, n in enumerate(checked.names) if kinds[n] == "boolean"]
            for k, row in enumerate(checked.rows):
                p = list(row)
                for i in booleans:
                    p[i] = None if p[i] is None else bool(p[i])
                p += [checked.vectors[n][k] for n in vec_names]
                if analyzed:
                    words = [tokens(row[i]) if row[i] else [] for i in positions]
                    p.append(sum(len(w) for w in words))
                    new_tokens += p[-1]
                    p += [" ".join(w) for w in words]
                params.append(p)
            with conn.cursor() as cur:
                cur.executemany(sql, params)
            if analyzed:
                self._count_terms(conn, table, schema, ids)
            self._stats(conn, table, schema, len(ids) - old_rows, new_tokens - old_tokens, zeros)
        return len(ids)

    def delete_by_ids(self, table: str, ids: Sequence[str | int]) -> int:
        if isinstance(ids, (str, int)):
            raise StorageError("ids must be a list of _id values", param="ids")
        return self._delete(table, "_id = ANY(%s)", ([str(i) for i in ids],))

    def delete_by_filter(self, table: str, flt: Filter) -> int:
        with self._lock:
            schema = self.get_schema(table)
            where, params = _where(schema, flt)
        if not where:
            raise StorageError("delete by filter needs at least one condition", param="filter")
        return self._delete(table, where, params)

    def _delete(self, table: str, where: str, params: Sequence[Any]) -> int:
        with self._tx() as conn:
            schema, _, _ = self._read_schema(conn, table, lock=True)
            n, tokens_gone, zeros = self._forget_rows(
                conn, table, schema, f"DELETE FROM {self._t(table)} WHERE {where} RETURNING *", params
            )
            self._stats(conn, table, schema, -n, -tokens_gone, zeros)
        return n

    # --- reads ---------------------------------------------------------------------------------
    def search(self, table: str, request: SearchRequest) -> list[dict[str, Any]]:
        with self._lock:
            conn = self._cx()
            schema, docs, total = self._read_schema(conn, table)
            return self._search(conn, table, schema, docs, total, request)

    def _search(
        self, conn: Any, table: str, schema: TableSchema, docs: int, total: int, req: SearchRequest
    ) -> list[dict[str, Any]]:
        plan = plan_search(schema, req, _where)
        where, params, sorts, fields = plan.where, plan.params, plan.sorts, plan.fields
        if not plan.vector and not plan.keyword:
            order = ", ".join(f"{q(n)} {d} NULLS {'FIRST' if d == 'ASC' else 'LAST'}" for n, d in sorts)
            sql = f'SELECT "$rid" FROM {self._t(table)}' + (f" WHERE {where}" if where else "")
            sql += f' ORDER BY {order + ", " if order else ""}"$rid" LIMIT %s'
            rids = [r[0] for r in conn.execute(sql, (*params, req.limit))]
            return self._fetch(conn, table, schema, rids, None, fields)
        n = plan.candidates
        ranked = []
        if plan.vector:
            ranked.append(self._knn(conn, table, schema, req, n, where, params))
        if plan.keyword:
            ranked.append(self._bm25(conn, table, schema, docs, total, req, n, where, params))
        top = fuse(ranked, req)
        return sort_rows(self._fetch(conn, table, schema, [k for k, _ in top], [s for _, s in top], fields), sorts)

    def _knn(
        self, conn: Any, table: str, schema: TableSchema, req: SearchRequest, k: int, where: str, params: list
    ) -> list[tuple[int, float]]:
        f = vector_field(schema, req)
        arr = query_vector(f, req.vector)
        if not f.dim or k == 0:
            return []  # no vector written yet
        ef = max(self.ef_search, k)
        if ef != self._ef:
            conn.execute(f"SET hnsw.ef_search = {int(min(ef, 1000))}")
            self._ef = ef
        op = "<=>" if schema.metric == "cosine" else "<->"
        col = q(f.name)
        sql = (
            f'SELECT "$rid", {col} {op} %s AS d FROM {self._t(table)} WHERE {col} IS NOT NULL'
            + (f" AND {where}" if where else "")
            + " ORDER BY d LIMIT %s"
        )
        hits = conn.execute(sql, (arr, *params, k)).fetchall()
        if schema.metric == "cosine":  # a zero vector has no direction: similarity 0, as on SQLite
            return [(rid, 1.0 - d if d == d else 0.0) for rid, d in hits]
        return [(rid, -d) for rid, d in hits]

    def _bm25(
        self,
        conn: Any,
        table: str,
        schema: TableSchema,
        docs: int,
        total: int,
        req: SearchRequest,
        k: int,
        where: str,
        params: list,
    ) -> list[tuple[int, float]]:
        names = text_fields(schema, req)
        words = query_words(req.keyword or "")
        if not words or k == 0 or docs == 0:
            return []
        df: dict[str, int] = {}
        for lex, n in conn.execute(
            "SELECT l.lex, coalesce(d.n, 0) FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i) "
            f"CROSS JOIN LATERAL (SELECT lexeme AS lex FROM unnest(to_tsvector({self.ts_config}, u.t)) LIMIT 1) l "
            f"LEFT JOIN {self._t(table, 'df')} d ON d.lexeme = l.lex ORDER BY u.i",
            (words,),
        ):
            df.setdefault(lex, n)
        tsv = [q("$tsv$" + n) for n in names]

        def count_all(terms: list[str]) -> int:
            if len(terms) == 1:
                return df[terms[0]]
            match = " OR ".join(f"{c} @@ %s::tsquery" for c in tsv)
            return conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {self._t(table)} WHERE {match} LIMIT %s) s",
                (*[_tsquery(terms, "AND")] * len(tsv), self.fts_budget + 1),
            ).fetchone()[0]

        terms, op = textmod.affordable_terms(list(df), count_all, self.fts_budget)
        if not terms:
            return []
        # Okapi BM25 as FTS5's bm25(): tf summed over the searched fields, the length over all
        norm = f'{K1} * (1 - {B} + {B} * "$len"::float8 / {max(total / docs, 1e-9)!r})'
        tfs = [" + ".join(f"coalesce(({q('$tf$' + name)} ->> %s)::float8, 0)" for name in names) for _ in terms]
        score = " + ".join(
            f"{_idf(docs, df[t])!r} * tf.f{i} * {K1 + 1} / (tf.f{i} + {norm})" for i, t in enumerate(terms)
        )
        match = " OR ".join(f"{c} @@ %s::tsquery" for c in tsv)
        sql = (
            f'SELECT r."$rid", {score} AS s FROM {self._t(table)} r '
            f"CROSS JOIN LATERAL (SELECT {', '.join(f'{tf} AS f{i}' for i, tf in enumerate(tfs))}) tf "
            f"WHERE ({match})" + (f" AND {where}" if where else "") + ' ORDER BY s DESC, r."$rid" LIMIT %s'
        )
        args = [t for t in terms for _ in names] + [_tsquery(terms, op)] * len(tsv) + list(params) + [k]
        return [(rid, float(s)) for rid, s in conn.execute(sql, args)]

    def _fetch(
        self, conn: Any, table: str, schema: TableSchema, rids: list[int], scores: list[float] | None, names: list[str]
    ) -> list[dict[str, Any]]:
        if not rids:
            return []
        kinds = [schema.field(n).kind for n in names]
        got = {
            r[0]: r[1:]
            for r in conn.execute(
                f'SELECT "$rid", {", ".join(q(n) for n in names)} FROM {self._t(table)} WHERE "$rid" = ANY(%s)',
                (rids,),
            )
        }
        out = []
        for i, rid in enumerate(rids):
            if rid not in got:
                continue  # deleted by another client between the search and this read
            row = {}
            for n, kind, v in zip(names, kinds, got[rid], strict=True):
                if kind == "vector":
                    row[n] = None if v is None else v.to_numpy().tolist()
                elif kind == "json":
                    row[n] = v  # psycopg parsed the json column already
                else:
                    row[n] = from_db(kind, v)
            if scores is not None:
                row["_score"] = float(scores[i])
            out.append(row)
        return out

    # --- maintenance ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL makes a write durable at its COMMIT (fsync on)."""

    def integrity_check(self) -> dict[str, Any]:
        """Check that the BM25 statistics agree with the rows (row count, token total, each
        term's document count) and count rows and vectors per table; raises
        ``StorageIntegrityError`` on a disagreement. Returns ``{table: {"rows": n, <vector
        field>: vectors}}``."""
        report: dict[str, Any] = {}
        with self._lock:
            conn = self._cx()
            for table in self.list_tables():
                schema, docs, total = self._read_schema(conn, table)
                rows = self._t(table)
                n, tokens_sum = conn.execute(
                    f'SELECT count(*), coalesce(sum("$len"), 0) FROM {rows}'
                    if schema.analyzed
                    else f"SELECT count(*), 0 FROM {rows}"
                ).fetchone()
                if (n, tokens_sum) != (docs, total):
                    raise StorageIntegrityError(
                        f"{table}: statistics say {docs} rows / {total} tokens, the table has {n} / {tokens_sum}"
                    )
                if schema.analyzed:
                    bad = conn.execute(
                        f"WITH c AS (SELECT k.lex, count(*) AS n FROM {rows} r CROSS JOIN LATERAL "
                        f"{self._keys(schema, 'r')} k(lex) GROUP BY k.lex) "
                        f"SELECT count(*) FROM c FULL JOIN {self._t(table, 'df')} d ON d.lexeme = c.lex "
                        "WHERE c.n IS DISTINCT FROM d.n"
                    ).fetchone()[0]
                    if bad:
                        raise StorageIntegrityError(f"{table}: {bad} terms have a wrong document count")
                info: dict[str, Any] = {"rows": n}
                for f in schema.of_kind("vector"):
                    if f.dim:
                        info[f.name] = conn.execute(f"SELECT count({q(f.name)}) FROM {rows}").fetchone()[0]
                report[table] = info
        return report

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


# --- values ------------------------------------------------------------------------------------
_CASTS = {"string": "text", "long": "bigint", "float": "float8", "double": "float8", "boolean": "boolean"}


def _cast(kind: str) -> str:
    return _CASTS.get(kind, "text")


def _check_pg_values(names: list[str], kinds: dict[str, str], row: tuple) -> None:
    """What PostgreSQL refuses and SQLite takes: NUL characters in text, integers beyond 64 bits,
    an ``_id`` too long for its unique index."""
    if len(row[0].encode()) > MAX_ID_BYTES:
        raise StorageError(
            f"field '_id' is {len(row[0].encode())} bytes; at most {MAX_ID_BYTES} on PostgreSQL", param="_id"
        )
    for name, v in zip(names, row, strict=True):
        if isinstance(v, str) and "\x00" in v:
            raise StorageError(f"field {name!r} contains a NUL character, which PostgreSQL cannot store", param=name)
        if kinds[name] == "long" and v is not None and not -(2**63) <= v < 2**63:
            raise StorageError(f"field {name!r} is LONG (64-bit), got {v}", param=name)


def _where(schema: TableSchema, flt: Filter | None) -> tuple[str, list]:
    """The SQL of a filter and its parameters; string fields with an index compare on the
    indexed prefix first so the index is used."""
    mode, conds = conditions(schema, flt)
    if not conds:
        return "", []
    parts: list[str] = []
    params: list[Any] = []
    for f, op, value in conds:
        col = q(f.name)
        cast = _cast(f.kind)
        value = bool(value) if f.kind == "boolean" and value is not None and op != "in" else value
        prefixed = f.kind == "string" and not f.analyze and not f.no_index and f.name != "_id"
        if op == "in":
            values = [bool(v) if f.kind == "boolean" else v for v in value]
            if prefixed:
                parts.append(f"(left({col}, {INDEX_PREFIX}) = ANY(%s::text[]) AND {col} = ANY(%s::text[]))")
                params += [[v[:INDEX_PREFIX] for v in values if v is not None], values]
            else:
                parts.append(f"{col} = ANY(%s::{cast}[])")
                params.append(values)
        elif value is None:
            parts.append(f"{col} IS {'NOT ' if op == '!=' else ''}NULL")
        elif prefixed and op != "!=":
            pre = {"=": "=", "<": "<=", "<=": "<=", ">": ">=", ">=": ">="}[op]
            parts.append(f"(left({col}, {INDEX_PREFIX}) {pre} left(%s::text, {INDEX_PREFIX}) AND {col} {op} %s::text)")
            params += [value, value]
        else:
            parts.append(f"{col} {op} %s::{cast}")
            params.append(value)
    return "(" + f" {mode} ".join(parts) + ")", params


__all__ = ["PostgresEngine", "fold", "query_words", "tokens"]
