"""Checks and conversions every engine shares: rows to write, filter conditions, sorts, the
fields a query returns, the fusion of ranked lists and the ordering of results.

An engine renders the checked values into its own SQL; the checks (and so the errors, each naming
the field) are the same for every engine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine import FILTER_OPS, SCALAR_KINDS, FieldSpec, Filter, SearchRequest, TableSchema, check_fusion
from .errors import StorageError, VectorDimensionError
from .fusion import convex, rrf


def vector_of(name: str, v: Any, row: int | None) -> np.ndarray:
    """``v`` as a 1-dim float32 array; raises ``StorageError`` (``param=name``) for a string, a
    non-numeric value, an empty or multi-dim array, or NaN/infinite values."""
    where = f"row {row}: " if row is not None else ""
    if isinstance(v, str):
        raise StorageError(
            f"{where}field {name!r} needs a vector (list of floats), got a string; pass it in "
            "vector_fields=[...] to embed text",
            param=name,
        )
    try:
        arr = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise StorageError(
            f"{where}field {name!r} needs a vector (list of floats), got {type(v).__name__}", param=name
        ) from None
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise StorageError(f"{where}field {name!r} needs a non-empty 1-dim vector, got shape {arr.shape}", param=name)
    if not np.isfinite(arr).all():
        raise StorageError(f"{where}field {name!r} has NaN or infinite values", param=name)
    return arr


def to_db(f: FieldSpec, v: Any, row: int) -> Any:
    """A scalar or JSON value checked against its field: JSON fields become JSON text, booleans
    ints; raises ``StorageError`` (``param=f.name``) for a value of the wrong type."""
    if v is None:
        return None
    if f.kind == "json":
        try:
            return json.dumps(v, ensure_ascii=False)
        except (TypeError, ValueError):
            raise StorageError(
                f"row {row}: field {f.name!r} ({f.type_text}) must be JSON-serialisable", param=f.name
            ) from None
    ok = SCALAR_KINDS[f.kind]
    if not isinstance(v, ok) or (f.kind != "boolean" and isinstance(v, bool)):
        raise StorageError(
            f"row {row}: field {f.name!r} is {f.kind.upper()}, got {type(v).__name__} {v!r:.60}", param=f.name
        )
    if f.kind in ("float", "double") and not math.isfinite(v):
        raise StorageError(f"row {row}: field {f.name!r} is not finite: {v!r}", param=f.name)
    return int(v) if f.kind == "boolean" else v


def from_db(kind: str, v: Any) -> Any:
    """The Python value of a stored scalar/JSON value (JSON text is parsed, ints become bools)."""
    if v is None:
        return None
    if kind == "json":
        return json.loads(v) if isinstance(v, (str, bytes)) else v
    if kind == "boolean":
        return bool(v)
    return v


@dataclass
class Prepared:
    """Checked rows: ``rows`` are tuples in the order of ``names`` (the non-vector fields, ``_id``
    first); ``vectors`` maps each vector field to one float32 array (or None) per row; ``new_dims``
    are the dimensions this write fixes (fields without one yet)."""

    names: list[str]
    rows: list[tuple]
    vectors: dict[str, list[np.ndarray | None]]
    new_dims: dict[str, int]


def prepare_rows(schema: TableSchema, rows: list[dict[str, Any]]) -> Prepared:
    """Check ``rows`` against ``schema``; when an ``_id`` repeats, the last row wins (as if the
    rows were written one after another). Raises ``UnknownFieldError``, ``VectorDimensionError``
    or ``StorageError``, each naming the field."""
    scalar = [f for f in schema.fields if f.kind != "vector"]
    vectors: dict[str, list[np.ndarray | None]] = {f.name: [] for f in schema.of_kind("vector")}
    dims = {f.name: f.dim for f in schema.of_kind("vector") if f.dim}
    new_dims: dict[str, int] = {}
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise StorageError(f"row {i} must be a dict of field -> value, got {type(row).__name__}", param="row")
        for key in row:
            if key not in vectors:
                schema.field(key)  # raises UnknownFieldError naming the key
        rid = row.get("_id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            raise StorageError(f"row {i}: field '_id' must be a non-empty string (or int), got {rid!r}", param="_id")
        out.append((str(rid), *(to_db(f, row.get(f.name), i) for f in scalar[1:])))
        for name in vectors:
            v = row.get(name)
            if v is None:
                vectors[name].append(None)
                continue
            arr = vector_of(name, v, i)
            dim = dims.setdefault(name, arr.shape[0])
            if name not in new_dims and not schema.field(name).dim:
                new_dims[name] = dim
            if arr.shape[0] != dim:
                raise VectorDimensionError(
                    f"row {i}: field {name!r} has a {arr.shape[0]}-dim vector; the table's {name!r} is {dim}-dim",
                    param=name,
                    expected=dim,
                    got=int(arr.shape[0]),
                )
            vectors[name].append(arr)
    last = {r[0]: k for k, r in enumerate(out)}
    if len(last) < len(out):
        keep = sorted(last.values())
        out = [out[k] for k in keep]
        vectors = {name: [vs[k] for k in keep] for name, vs in vectors.items()}
    return Prepared([f.name for f in scalar], out, vectors, new_dims)


def conditions(schema: TableSchema, flt: Filter | None) -> tuple[str, list[tuple[FieldSpec, str, Any]]]:
    """The checked conditions of ``flt`` as ``(mode, [(field, op, value)])``: ``mode`` is
    ``AND``/``OR``; ``value`` is converted like a stored value (``in``: a list of them; None
    with ``=``/``!=``: IS [NOT] NULL). Raises ``StorageError`` naming the field (or ``filter``)."""
    if flt is None or not flt.conditions:
        return "AND", []
    if flt.mode not in ("and", "or"):
        raise StorageError(f"unknown filter mode {flt.mode!r}; accepted: and, or", param="filter")
    out = []
    for c in flt.conditions:
        f = schema.field(c.field)
        if f.kind not in SCALAR_KINDS:
            raise StorageError(f"field {f.name!r} ({f.kind}) cannot be filtered; only scalar fields can", param=f.name)
        if c.op not in FILTER_OPS:
            raise StorageError(
                f"unknown filter operator {c.op!r} on {f.name!r}; accepted: {', '.join(FILTER_OPS)}", param=f.name
            )
        if c.op == "in":
            if not isinstance(c.value, (list, tuple, set)):
                raise StorageError(f"filter 'in' on {f.name!r} needs a list of values", param=f.name)
            out.append((f, "in", [to_db(f, v, -1) for v in c.value]))
        else:
            out.append((f, c.op, None if c.value is None else to_db(f, c.value, -1)))
    return flt.mode.upper(), out


def check_sorts(schema: TableSchema, sorts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``[(field, "ASC"|"DESC")]``; raises ``StorageError`` naming a non-scalar field or an
    unknown order (accepted: asc, desc)."""
    out = []
    for name, direction in sorts:
        f = schema.field(name)
        if f.kind not in SCALAR_KINDS:
            raise StorageError(f"field {f.name!r} ({f.kind}) cannot be sorted on; only scalar fields can", param=f.name)
        d = str(direction).lower()
        if d not in ("asc", "desc"):
            raise StorageError(f"unknown sort order {direction!r} for {f.name!r}; accepted: asc, desc", param=f.name)
        out.append((f.name, d.upper()))
    return out


def out_fields(schema: TableSchema, fields: list[str]) -> list[str]:
    """The fields a query returns: ``fields`` (with ``_id`` first), or every non-vector field."""
    if not fields:
        return [f.name for f in schema.fields if f.kind != "vector"]
    for n in fields:
        schema.field(n)
    return ["_id", *[n for n in fields if n != "_id"]]


def check_limit(limit: Any) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise StorageError(f"limit must be an integer >= 0, got {limit!r}", param="limit")
    return limit


@dataclass(frozen=True)
class SearchPlan:
    """A checked ``SearchRequest``: the engine's WHERE clause and parameters, the sorts and output
    fields, which searches run (``vector``, ``keyword``) and how many candidates each ranks."""

    where: str
    params: list
    sorts: list[tuple[str, str]]
    fields: list[str]
    vector: bool
    keyword: bool
    candidates: int


def plan_search(schema: TableSchema, req: SearchRequest, where) -> SearchPlan:
    """Check ``req`` against ``schema`` as every engine does (limit, fusion, sorts, fields; the
    filter through the engine's ``where(schema, filter) -> (sql, params)``). Raises ``StorageError``
    naming the bad field."""
    check_limit(req.limit)
    check_fusion(req.fusion)
    sql, params = where(schema, req.filter)
    vector = req.vector is not None and len(req.vector) > 0
    keyword = req.keyword is not None and req.keyword.strip() != ""
    candidates = req.limit if not (vector and keyword) else max(req.n_candidates, req.limit)
    return SearchPlan(
        sql, params, check_sorts(schema, req.sorts), out_fields(schema, req.fields), vector, keyword, candidates
    )


def fuse(ranked: list[list[tuple[Any, float]]], req: SearchRequest) -> list[tuple[Any, float]]:
    """The top ``req.limit`` of one ranked list, or of two fused by ``req.fusion`` (``rrf`` over
    the ranks, ``convex`` over the scores; see ``fusion.py``). Lists are ``[(key, score)]``,
    higher is better, best first."""
    if len(ranked) == 1:
        return ranked[0][: req.limit]
    if req.fusion == "convex":
        return convex(ranked)[: req.limit]
    return rrf([[k for k, _ in r] for r in ranked], k=req.rrf_k)[: req.limit]


def sort_rows(rows: list[dict[str, Any]], sorts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Order the rows a search selected by the sort keys (a stable sort per key, last key first)."""
    for name, direction in reversed(sorts):
        rows.sort(key=lambda r, n=name: (r.get(n) is None, r.get(n)), reverse=direction == "DESC")
    return rows


def vector_field(schema: TableSchema, req: SearchRequest) -> FieldSpec:
    """The vector field of a k-NN query; raises ``StorageError`` when none is named or the named
    field is not a vector field (``accepted`` lists the vector fields)."""
    if not req.vector_field:
        raise StorageError(
            "a vector query needs a vector field: set_vector_query(v, fields=[...])", param="vector_field"
        )
    f = schema.field(req.vector_field)
    if f.kind != "vector":
        names = [v.name for v in schema.of_kind("vector")]
        raise StorageError(
            f"field {f.name!r} is not a vector field; vector fields: {', '.join(names) or '(none)'}",
            param=f.name,
            accepted=names,
        )
    return f


def query_vector(f: FieldSpec, v: Any) -> np.ndarray:
    """The query vector as float32, checked against the field's dimension (when fixed)."""
    arr = vector_of(f.name, v, None)
    if f.dim and arr.shape[0] != f.dim:
        raise VectorDimensionError(
            f"the query vector is {arr.shape[0]}-dim; field {f.name!r} is {f.dim}-dim",
            param=f.name,
            expected=f.dim,
            got=int(arr.shape[0]),
        )
    return arr


def text_fields(schema: TableSchema, req: SearchRequest) -> list[str]:
    """The full-text fields a keyword query searches (``req.search_fields`` or every analyzed
    field); raises ``StorageError`` naming a field that is not analyzed, or ``fields`` when the
    table has none."""
    analyzed = [f.name for f in schema.analyzed]
    names = req.search_fields or analyzed
    for name in names:
        if not schema.field(name).analyze:
            raise StorageError(
                f"field {name!r} is not a full-text field (add it with FieldOption.ANALYZE); "
                f"full-text fields: {', '.join(analyzed) or '(none)'}",
                param=name,
                accepted=analyzed,
            )
    if not names:
        raise StorageError("the table has no full-text field (FieldOption.ANALYZE) to search", param="fields")
    return names
