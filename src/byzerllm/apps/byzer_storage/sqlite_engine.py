"""The embedded engine: one SQLite file per database, sqlite-vec for k-NN, FTS5 for BM25.

Per table ``t`` the file holds:

- ``t$rows``: one row per ``_id`` (scalar fields as columns, arrays/maps/structs as JSON text),
  with an integer key ``$rid`` shared by the indexes below;
- ``t$fts``: an FTS5 table over the analyzed fields (contentless: it stores only the index; the
  text lives in ``t$rows``), fed with jieba-segmented text (see ``text.py``), ranked by BM25;
- ``t$vec$<field>``: a sqlite-vec ``vec0`` table per vector field (exact brute-force k-NN, cosine
  or L2), created when the first vector fixes the dimension.

The schema of every table is kept in ``_byzer_tables``. The file runs in WAL mode and every write
is one ``BEGIN IMMEDIATE`` transaction, so a process killed mid-write leaves the last committed
state, and concurrent readers never see half a batch. ``synchronous=NORMAL``: a committed batch
survives a crash of the process; after power loss the last batches may be rolled back, never torn.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import text as textmod
from .engine import (
    SCALAR_KINDS,
    Filter,
    SearchRequest,
    StorageEngine,
    TableSchema,
    check_name,
)
from .errors import StorageError, StorageIntegrityError, TableNotFoundError, VectorDimensionError
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
from .vector_index import IVF_MIN_ROWS, VectorIndex

RID = '"$rid"'
SQL_TYPES = {
    "string": "TEXT",
    "long": "INTEGER",
    "float": "REAL",
    "double": "REAL",
    "boolean": "INTEGER",
    "json": "TEXT",
}
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"
FTS_BUDGET = 3000  # postings BM25 scores per query before common terms are left out (~6 ms)


def _sqlite():
    """pysqlite3 (a SQLite build that can load extensions); the stdlib module here cannot."""
    try:
        import pysqlite3.dbapi2 as sqlite3
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the embedded store needs `pip install byzerllm[storage]` (pysqlite3-binary, sqlite-vec, jieba)"
        ) from exc
    return sqlite3


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _rows(t: str) -> str:
    return q(f"{t}$rows")


def _fts(t: str) -> str:
    return q(f"{t}$fts")


def _vec(t: str, f: str) -> str:
    return q(f"{t}$vec${f}")


class SqliteEngine(StorageEngine):
    """The tables of one database file ``path`` (created with its folder when missing).

    Safe to share between threads of one process (a lock serialises calls); several processes
    may open the same file (SQLite locking; writers wait up to ``timeout`` seconds).

    ``vector_cache``: run k-NN on an in-memory float32 copy of each vector field (memory
    n x dim x 4 bytes per field, e.g. 154 MB for 100k 384-dim vectors), loaded on the first query;
    this engine's writes update it in place, another process's writes make it reload. Exact below
    ``ivf_min_rows`` rows (same results as vec0), an IVF index probing ``nprobe`` lists above
    (approximate; see ``vector_index.py``). Off: vec0's exact scan.
    ``fts_budget``: postings BM25 may score per query
    before the most frequent query terms are left out (see ``_affordable_terms``; 0 = never).
    """

    def __init__(
        self,
        path: str | Path,
        timeout: float = 30.0,
        vector_cache: bool = True,
        fts_budget: int = FTS_BUDGET,
        ivf_min_rows: int = IVF_MIN_ROWS,
        nprobe: int | None = None,
    ) -> None:
        import sqlite_vec

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3 = _sqlite()
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=timeout)
        self._conn.enable_load_extension(True)
        sqlite_vec.load(self._conn)
        self._conn.enable_load_extension(False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS _byzer_tables (name TEXT PRIMARY KEY, schema TEXT NOT NULL, "
            "created_at REAL NOT NULL DEFAULT (unixepoch('subsec')))"
        )
        self._schemas: dict[str, TableSchema] = {}
        self._data_version = self._version()
        # k-NN runs on an in-memory copy of each vector field (numpy: ~8x faster than vec0's
        # scan, which this sqlite-vec build runs without SIMD); vec0 stays the stored index and
        # is used when the cache is off.
        self.vector_cache = vector_cache
        self._vcache: dict[tuple[str, str], VectorIndex] = {}
        self.ivf_min_rows, self.nprobe = ivf_min_rows, nprobe
        self._executor: ThreadPoolExecutor | None = None
        self.fts_budget = fts_budget
        self._dfcache: dict[tuple[str, str], int] = {}

    # --- plumbing ------------------------------------------------------------------------------
    def _version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _fresh(self) -> None:
        """Forget cached schemas when another connection committed since we last looked."""
        v = self._version()
        if v != self._data_version:
            self._schemas.clear()
            self._vcache.clear()
            self._dfcache.clear()
            self._data_version = v

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._schemas.clear()
                self._vcache.clear()
                raise
            finally:
                self._dfcache.clear()
            self._conn.execute("COMMIT")

    def _schema(self, table: str) -> TableSchema:
        check_name("table", table)
        self._fresh()
        if table not in self._schemas:
            row = self._conn.execute("SELECT schema FROM _byzer_tables WHERE name = ?", (table,)).fetchone()
            if row is None:
                tables = self.list_tables()
                raise TableNotFoundError(
                    f"table {table!r} does not exist in {self.path}; tables: {', '.join(tables) or '(none)'}"
                    " (create it with schema_builder()...execute())",
                    param="table",
                    available=tables,
                )
            self._schemas[table] = TableSchema.from_json(row[0])
        return self._schemas[table]

    def _create_indexes(self, conn, table: str, schema: TableSchema) -> None:
        cols = [f"{RID} INTEGER PRIMARY KEY", '"_id" TEXT NOT NULL UNIQUE']
        cols += [f"{q(f.name)} {SQL_TYPES[f.kind]}" for f in schema.fields if f.kind != "vector" and f.name != "_id"]
        conn.execute(f"CREATE TABLE {_rows(table)} ({', '.join(cols)})")
        for f in schema.fields:
            if f.kind in SCALAR_KINDS and f.name != "_id" and not f.analyze and not f.no_index:
                conn.execute(f"CREATE INDEX {q(f'{table}$ix${f.name}')} ON {_rows(table)} ({q(f.name)})")
        if schema.analyzed:
            cols = ", ".join(f"c{i}" for i in range(len(schema.analyzed)))
            conn.execute(
                f"CREATE VIRTUAL TABLE {_fts(table)} USING fts5({cols}, content='', contentless_delete=1, "
                f"tokenize='{FTS_TOKENIZER}')"
            )
        for f in schema.of_kind("vector"):
            if f.dim:
                self._create_vec(conn, table, f.name, f.dim, schema.metric)

    @staticmethod
    def _create_vec(conn, table: str, field: str, dim: int, metric: str) -> None:
        conn.execute(
            f"CREATE VIRTUAL TABLE {_vec(table, field)} USING vec0(embedding float[{dim}] distance_metric={metric})"
        )

    def _drop_indexes(self, conn, table: str, schema: TableSchema) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {_rows(table)}")
        conn.execute(f"DROP TABLE IF EXISTS {_fts(table)}")
        for f in schema.of_kind("vector"):
            conn.execute(f"DROP TABLE IF EXISTS {_vec(table, f.name)}")

    # --- tables --------------------------------------------------------------------------------
    def create_table(self, table: str, schema: TableSchema) -> bool:
        check_name("table", table)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM _byzer_tables WHERE name = ?", (table,)).fetchone():
                return False
            conn.execute("INSERT INTO _byzer_tables(name, schema) VALUES (?, ?)", (table, schema.to_json()))
            self._create_indexes(conn, table, schema)
        self._schemas[table] = schema
        return True

    def table_exists(self, table: str) -> bool:
        check_name("table", table)
        with self._lock:
            return self._conn.execute("SELECT 1 FROM _byzer_tables WHERE name = ?", (table,)).fetchone() is not None

    def get_schema(self, table: str) -> TableSchema:
        with self._lock:
            return self._schema(table)

    def list_tables(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM _byzer_tables ORDER BY name")]

    def count(self, table: str) -> int:
        with self._lock:
            self._schema(table)
            return self._conn.execute(f"SELECT count(*) FROM {_rows(table)}").fetchone()[0]

    def truncate(self, table: str) -> None:
        with self._tx() as conn:
            schema = self._schema(table)
            self._drop_indexes(conn, table, schema)
            self._create_indexes(conn, table, schema)
            self._forget_table(table)

    def drop(self, table: str) -> bool:
        check_name("table", table)
        with self._tx() as conn:
            row = conn.execute("SELECT schema FROM _byzer_tables WHERE name = ?", (table,)).fetchone()
            if row is None:
                return False
            self._drop_indexes(conn, table, TableSchema.from_json(row[0]))
            conn.execute("DELETE FROM _byzer_tables WHERE name = ?", (table,))
            self._forget_table(table)
        self._schemas.pop(table, None)
        return True

    # --- writes --------------------------------------------------------------------------------
    def upsert(self, table: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        with self._lock:
            schema = self._schema(table)
        checked = prepare_rows(schema, rows)
        prepared, new_dims = checked.rows, checked.new_dims
        vectors = {name: [None if v is None else v.tobytes() for v in vs] for name, vs in checked.vectors.items()}
        names = [f.name for f in schema.fields if f.kind != "vector"]
        cols = ", ".join(q(n) for n in names)
        marks = ", ".join("?" * len(names))
        updates = ", ".join(f"{q(n)} = excluded.{q(n)}" for n in names[1:]) or '"_id" = excluded."_id"'
        ids_json = json.dumps([r[0] for r in prepared])
        analyzed = [names.index(f.name) for f in schema.analyzed]
        with self._tx() as conn:
            schema = self._schema(table)
            for name, dim in new_dims.items():
                current = schema.field(name).dim
                if current and current != dim:  # another process fixed the dimension meanwhile
                    raise VectorDimensionError(
                        f"field {name!r} is {current}-dim; got {dim}-dim vectors", param=name, expected=current, got=dim
                    )
                if not current:
                    self._create_vec(conn, table, name, dim, schema.metric)
                    schema = schema.with_dim(name, dim)
            if new_dims:
                conn.execute("UPDATE _byzer_tables SET schema = ? WHERE name = ?", (schema.to_json(), table))
                self._schemas[table] = schema
            old = [
                r[0]
                for r in conn.execute(
                    f"SELECT {RID} FROM {_rows(table)} WHERE _id IN (SELECT value FROM json_each(?))", (ids_json,)
                )
            ]
            if old:
                if analyzed:
                    conn.executemany(f"DELETE FROM {_fts(table)} WHERE rowid = ?", ((r,) for r in old))
                for name in vectors:
                    if schema.field(name).dim:
                        conn.executemany(f"DELETE FROM {_vec(table, name)} WHERE rowid = ?", ((r,) for r in old))
            conn.executemany(
                f"INSERT INTO {_rows(table)} ({cols}) VALUES ({marks}) ON CONFLICT(_id) DO UPDATE SET {updates}",
                prepared,
            )
            rid_of = dict(
                conn.execute(
                    f"SELECT _id, {RID} FROM {_rows(table)} WHERE _id IN (SELECT value FROM json_each(?))", (ids_json,)
                )
            )
            rids = [rid_of[r[0]] for r in prepared]
            if analyzed:
                fcols = ", ".join(f"c{i}" for i in range(len(analyzed)))
                conn.executemany(
                    f"INSERT INTO {_fts(table)} (rowid, {fcols}) VALUES (?{', ?' * len(analyzed)})",
                    (
                        (rid, *(textmod.segment(r[k]) if r[k] else None for k in analyzed))
                        for rid, r in zip(rids, prepared, strict=True)
                    ),
                )
            written = {}
            for name, vs in vectors.items():
                pairs = [(rid, v) for rid, v in zip(rids, vs, strict=True) if v is not None]
                written[name] = pairs
                if pairs:
                    conn.executemany(f"INSERT INTO {_vec(table, name)} (rowid, embedding) VALUES (?, ?)", pairs)
        with self._lock:
            for name, pairs in written.items():
                self._update_index(table, name, old, pairs)
        return len(prepared)

    def _delete_rids(self, conn, table: str, schema: TableSchema, rids: list[int]) -> None:
        if schema.analyzed:
            conn.executemany(f"DELETE FROM {_fts(table)} WHERE rowid = ?", ((r,) for r in rids))
        for f in schema.of_kind("vector"):
            if f.dim:
                conn.executemany(f"DELETE FROM {_vec(table, f.name)} WHERE rowid = ?", ((r,) for r in rids))
        conn.executemany(f"DELETE FROM {_rows(table)} WHERE {RID} = ?", ((r,) for r in rids))

    def delete_by_ids(self, table: str, ids: Sequence[str | int]) -> int:
        if isinstance(ids, (str, int)):
            raise StorageError("ids must be a list of _id values", param="ids")
        ids_json = json.dumps([str(i) for i in ids])
        with self._tx() as conn:
            schema = self._schema(table)
            rids = [
                r[0]
                for r in conn.execute(
                    f"SELECT {RID} FROM {_rows(table)} WHERE _id IN (SELECT value FROM json_each(?))", (ids_json,)
                )
            ]
            self._delete_rids(conn, table, schema, rids)
            for f in schema.of_kind("vector"):
                self._update_index(table, f.name, rids, [])
        return len(rids)

    def delete_by_filter(self, table: str, flt: Filter) -> int:
        with self._tx() as conn:
            schema = self._schema(table)
            where, params = _where(schema, flt)
            if not where:
                raise StorageError("delete by filter needs at least one condition", param="filter")
            rids = [r[0] for r in conn.execute(f"SELECT {RID} FROM {_rows(table)} WHERE {where}", params)]
            self._delete_rids(conn, table, schema, rids)
            for f in schema.of_kind("vector"):
                self._update_index(table, f.name, rids, [])
        return len(rids)

    # --- reads ---------------------------------------------------------------------------------
    def search(self, table: str, request: SearchRequest) -> list[dict[str, Any]]:
        with self._lock:
            schema = self._schema(table)
            return self._search(table, schema, request)

    def _search(self, table: str, schema: TableSchema, req: SearchRequest) -> list[dict[str, Any]]:
        plan = plan_search(schema, req, _where)
        where, params, sorts, fields = plan.where, plan.params, plan.sorts, plan.fields
        has_vec, has_kw = plan.vector, plan.keyword
        if not has_vec and not has_kw:
            order = ", ".join(f"{q(n)} {d}" for n, d in sorts) or RID
            sql = f"SELECT {RID} FROM {_rows(table)}" + (f" WHERE {where}" if where else "")
            rids = [r[0] for r in self._conn.execute(f"{sql} ORDER BY {order} LIMIT ?", (*params, req.limit))]
            return self._fetch(table, schema, rids, None, fields)
        ranked: list[list[tuple[int, float]]] = []
        n = plan.candidates
        knn = self._knn(table, schema, req, n, where, params) if has_vec else None
        if knn and has_kw:  # numpy and SQLite both release the GIL: the two searches overlap
            future = self._pool().submit(knn)
            bm25 = self._bm25(table, schema, req, n, where, params)
            ranked = [future.result(), bm25]
        elif knn:
            ranked = [knn()]
        else:
            ranked = [self._bm25(table, schema, req, n, where, params)]
        top = fuse(ranked, req)  # both lists score higher-is-better: similarity or -distance, -bm25
        return sort_rows(self._fetch(table, schema, [rid for rid, _ in top], [s for _, s in top], fields), sorts)

    def _knn(
        self, table: str, schema: TableSchema, req: SearchRequest, k: int, where: str, params: list
    ) -> Callable[[], list[tuple[int, float]]]:
        """Validate the vector query and return the k-NN search as a function: with the in-memory
        index it touches no SQLite connection, so a hybrid query runs it on another thread."""
        f = vector_field(schema, req)
        arr = query_vector(f, req.vector)
        if not f.dim or k == 0:
            return list  # no vector written yet
        if self.vector_cache:
            index = self._index(table, f.name, schema.metric)
            if schema.metric == "cosine":
                arr = arr / max(float(np.linalg.norm(arr)), 1e-30)
            allowed = None
            if where:
                allowed = np.fromiter(
                    (r[0] for r in self._conn.execute(f"SELECT {RID} FROM {_rows(table)} WHERE {where}", params)),
                    dtype=np.int64,
                )

            def search() -> list[tuple[int, float]]:
                rids, scores = index.search(arr, k, allowed)
                return [(int(r), float(sc)) for r, sc in zip(rids, scores, strict=True)]

            return search
        sql = f"SELECT rowid, distance FROM {_vec(table, f.name)} WHERE embedding MATCH ? AND k = ?"
        if where:
            sql += f" AND rowid IN (SELECT {RID} FROM {_rows(table)} WHERE {where})"
        hits = self._conn.execute(sql, (arr.tobytes(), k, *params)).fetchall()
        if schema.metric == "cosine":
            return lambda: [(rid, 1.0 - d) for rid, d in hits]
        return lambda: [(rid, -d) for rid, d in hits]

    def _update_index(self, table: str, field: str, removed: list[int], added: list[tuple[int, bytes]]) -> None:
        """Keep a loaded vector index in step with a committed write of this connection (writes of
        other connections are seen through ``PRAGMA data_version`` and reload it)."""
        index = self._vcache.get((table, field))
        if index is None:
            return
        rids = np.array([r for r, _ in added], dtype=np.int64)
        mat = np.frombuffer(b"".join(v for _, v in added), dtype=np.float32)
        index.update(np.array(removed, dtype=np.int64), rids, mat)
        if index.stale:
            del self._vcache[(table, field)]

    def _forget_table(self, table: str) -> None:
        for key in [k for k in self._vcache if k[0] == table]:
            del self._vcache[key]

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byzer-storage-knn")
        return self._executor

    def _index(self, table: str, field: str, metric: str) -> VectorIndex:
        """The in-memory index of a vector field, read from vec0 on first use after a write; for
        cosine the vectors are scaled to unit length so a query costs one matrix-vector product."""
        key = (table, field)
        if key not in self._vcache:
            rows = self._conn.execute(f"SELECT rowid, embedding FROM {_vec(table, field)}").fetchall()
            rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            mat = (
                np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                if rows
                else np.zeros((0, 1), dtype=np.float32)
            )
            if metric == "cosine":
                mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-30)
            self._vcache[key] = VectorIndex(rids, mat, metric, ivf_min_rows=self.ivf_min_rows, nprobe=self.nprobe)
        return self._vcache[key]

    def _bm25(
        self, table: str, schema: TableSchema, req: SearchRequest, k: int, where: str, params: list
    ) -> list[tuple[int, float]]:
        analyzed = [f.name for f in schema.analyzed]
        names = text_fields(schema, req)
        terms, op = self._affordable_terms(table, textmod.query_terms(req.keyword or ""))
        if not terms or k == 0:
            return []
        match = textmod.fts5_match(terms, [f"c{analyzed.index(n)}" for n in names], op)
        fts = _fts(table)
        if where:
            sql = (
                f"SELECT f.rowid, bm25({fts}) AS s FROM {fts} f JOIN {_rows(table)} r ON r.{RID} = f.rowid "
                f"WHERE {fts} MATCH ? AND {where} ORDER BY s LIMIT ?"
            )
        else:
            sql = f"SELECT rowid, rank FROM {fts} WHERE {fts} MATCH ? ORDER BY rank LIMIT ?"
        return [(rid, -s) for rid, s in self._conn.execute(sql, (match, *params, k))]

    def _df(self, table: str, terms: list[str], cap: int) -> int:
        """Documents containing all ``terms``, counted up to ``cap`` (so common terms cost little)."""
        key = (table, *terms)
        if key not in self._dfcache:
            self._dfcache[key] = self._conn.execute(
                f"SELECT count(*) FROM (SELECT rowid FROM {_fts(table)} WHERE {_fts(table)} MATCH ? LIMIT ?)",
                (textmod.fts5_match(terms, [], "AND"), cap),
            ).fetchone()[0]
        return self._dfcache[key]

    def _affordable_terms(self, table: str, terms: list[str]) -> tuple[list[str], str]:
        """The query terms to rank with and how to join them: ``text.affordable_terms`` with
        this engine's ``fts_budget`` (BM25 in FTS5 costs ~2 us per matching document)."""
        cap = self.fts_budget + 1
        return textmod.affordable_terms(terms, lambda ts: self._df(table, ts, cap), self.fts_budget)

    def _fetch(
        self, table: str, schema: TableSchema, rids: list[int], scores: list[float] | None, out_fields: list[str]
    ) -> list[dict[str, Any]]:
        if not rids:
            return []
        plain = [n for n in out_fields if schema.field(n).kind != "vector"]
        got = {
            r[0]: r[1:]
            for r in self._conn.execute(
                f"SELECT {RID}, {', '.join(q(n) for n in plain)} FROM {_rows(table)} "
                f"WHERE {RID} IN (SELECT value FROM json_each(?))",
                (json.dumps(rids),),
            )
        }
        kinds = [schema.field(n).kind for n in plain]
        out = []
        for i, rid in enumerate(rids):
            if rid not in got:
                continue
            row = {n: from_db(kind, v) for n, kind, v in zip(plain, kinds, got[rid], strict=True)}
            for n in out_fields:
                if n not in row:
                    blob = (
                        self._conn.execute(f"SELECT embedding FROM {_vec(table, n)} WHERE rowid = ?", (rid,)).fetchone()
                        if schema.field(n).dim
                        else None
                    )
                    row[n] = np.frombuffer(blob[0], dtype=np.float32).tolist() if blob else None
            if scores is not None:
                row["_score"] = float(scores[i])
            out.append(row)
        return out

    # --- maintenance ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def integrity_check(self) -> dict[str, Any]:
        """Run SQLite's integrity check and count rows per index; raises ``StorageIntegrityError``
        when SQLite reports damage or an index disagrees with its table. Returns per-table counts."""
        with self._lock:
            res = [r[0] for r in self._conn.execute("PRAGMA integrity_check")]
            if res != ["ok"]:
                raise StorageIntegrityError(f"{self.path}: {'; '.join(res[:5])}")
            report: dict[str, Any] = {}
            for table in self.list_tables():
                schema = self._schema(table)
                rows = self._conn.execute(f"SELECT count(*) FROM {_rows(table)}").fetchone()[0]
                info: dict[str, Any] = {"rows": rows}
                if schema.analyzed:
                    self._conn.execute(f"INSERT INTO {_fts(table)}({_fts(table)}, rank) VALUES ('integrity-check', 1)")
                for f in schema.of_kind("vector"):
                    if f.dim:
                        n = self._conn.execute(f"SELECT count(*) FROM {_vec(table, f.name)}").fetchone()[0]
                        orphans = self._conn.execute(
                            f"SELECT count(*) FROM {_vec(table, f.name)} WHERE rowid NOT IN "
                            f"(SELECT {RID} FROM {_rows(table)})"
                        ).fetchone()[0]
                        if orphans:
                            raise StorageIntegrityError(f"{table}.{f.name}: {orphans} vectors without a row")
                        info[f.name] = n
                report[table] = info
            return report

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
            self._conn.close()


# --- values ------------------------------------------------------------------------------------
def _where(schema: TableSchema, flt: Filter | None) -> tuple[str, list]:
    mode, conds = conditions(schema, flt)
    if not conds:
        return "", []
    parts, params = [], []
    for f, op, value in conds:
        if op == "in":
            parts.append(f"{q(f.name)} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(value))
        elif value is None:
            parts.append(f"{q(f.name)} IS {'NOT ' if op == '!=' else ''}NULL")
        else:
            parts.append(f"{q(f.name)} {op} ?")
            params.append(value)
    return "(" + f" {mode} ".join(parts) + ")", params
