"""The storage engine interface: what ``ByzerStorage`` needs from a database.

An engine holds the tables of one database (one SQLite file for the embedded engine; one
PostgreSQL schema for a server engine). Tables have a typed schema (``TableSchema``); rows are
dicts keyed by field name with a unique string ``_id``. Vector fields hold float vectors whose
dimension is fixed by the first row written; analyzed string fields are indexed for BM25 full-text
search. Every engine answers the same ``SearchRequest`` with the same result shape, so the public
API and its tests do not depend on the engine.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import StorageError, UnknownFieldError

#: Scalar kinds a filter or sort can use, and the Python types a row may give for each.
SCALAR_KINDS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "boolean": (bool,),
}
#: ``vector``: an array of float/double (k-NN search); ``json``: arrays of other types, maps, structs.
KINDS = (*SCALAR_KINDS, "vector", "json")
METRICS = ("cosine", "l2")
FILTER_OPS = ("=", "!=", "<", "<=", ">", ">=", "in")
#: How a hybrid search fuses its two rankings (see ``fusion.py``); the first is the default.
FUSIONS = ("rrf", "convex")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` when it is a valid database/table/field name (letters, digits, ``_``, not
    starting with a digit, at most 128 characters); raise ``StorageError`` naming ``kind`` otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StorageError(
            f"{kind} name {name!r} is invalid: use letters, digits and '_', not starting with a digit",
            param=kind,
        )
    return name


def check_fusion(name: str) -> str:
    """Return ``name`` when it is one of ``FUSIONS``; raise ``StorageError`` (``param="fusion"``)
    listing the accepted values otherwise."""
    if not isinstance(name, str) or name not in FUSIONS:
        raise StorageError(
            f"field 'fusion': unknown fusion {name!r}; accepted: {', '.join(FUSIONS)}",
            param="fusion",
            accepted=list(FUSIONS),
        )
    return name


@dataclass(frozen=True)
class FieldSpec:
    """One column. ``kind`` is one of ``KINDS``; ``analyze`` marks BM25 full-text fields (strings),
    ``sort`` fields get an index for ordering, ``no_index`` fields are stored only. ``dim`` is the
    vector dimension, set by the first vector written (None before)."""

    name: str
    kind: str
    analyze: bool = False
    sort: bool = False
    no_index: bool = False
    dim: int | None = None
    type_text: str = ""  # the declared type as written, e.g. "array(long)", for error messages

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if self.kind not in KINDS:
            raise StorageError(
                f"field {self.name!r}: unknown kind {self.kind!r}; accepted: {', '.join(KINDS)}", param=self.name
            )
        if self.analyze and self.kind != "string":
            raise StorageError(f"field {self.name!r}: ANALYZE needs a STRING field, not {self.kind}", param=self.name)
        if self.sort and self.kind not in SCALAR_KINDS:
            raise StorageError(f"field {self.name!r}: SORT needs a scalar field, not {self.kind}", param=self.name)


@dataclass(frozen=True)
class TableSchema:
    """The fields of a table (``_id`` STRING always first) and the vector distance ``metric``
    (``cosine`` or ``l2``, shared by every vector field of the table)."""

    fields: tuple[FieldSpec, ...]
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise StorageError(
                f"unknown distance metric {self.metric!r}; accepted: {', '.join(METRICS)}", param="metric"
            )
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise StorageError(f"field {dupes[0]!r} is declared twice", param=dupes[0])
        if "_id" not in names:
            object.__setattr__(self, "fields", (FieldSpec("_id", "string"), *self.fields))
        elif self.field("_id").kind != "string":
            raise StorageError("field '_id' must be STRING", param="_id")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; raises ``UnknownFieldError`` listing the table's fields."""
        for f in self.fields:
            if f.name == name:
                return f
        raise UnknownFieldError(
            f"unknown field {name!r}; the table has: {', '.join(self.names)}", param=name, accepted=self.names
        )

    def of_kind(self, *kinds: str) -> list[FieldSpec]:
        return [f for f in self.fields if f.kind in kinds]

    @property
    def analyzed(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.analyze]

    def with_dim(self, name: str, dim: int) -> TableSchema:
        return replace(self, fields=tuple(replace(f, dim=dim) if f.name == name else f for f in self.fields))

    def to_json(self) -> str:
        return json.dumps({"metric": self.metric, "fields": [f.__dict__ for f in self.fields]})

    @classmethod
    def from_json(cls, text: str) -> TableSchema:
        data = json.loads(text)
        return cls(fields=tuple(FieldSpec(**f) for f in data["fields"]), metric=data["metric"])


@dataclass(frozen=True)
class Condition:
    """``field op value``; ``op`` is one of ``FILTER_OPS`` (``in`` takes a list)."""

    field: str
    value: Any
    op: str = "="


@dataclass(frozen=True)
class Filter:
    """Conditions joined by ``mode`` (``and`` / ``or``)."""

    mode: str
    conditions: tuple[Condition, ...]


@dataclass
class SearchRequest:
    """One query. With ``vector`` (and ``vector_field``) a k-NN search, with ``keyword`` a BM25
    search over ``search_fields`` (all analyzed fields when empty), with both a hybrid search whose
    two rankings are fused by ``fusion``; with neither, the rows matching ``filter`` in ``sorts`` order.

    ``fusion`` is ``"rrf"`` (default: reciprocal rank fusion, ranks only, as Byzer-Retrieval) or
    ``"convex"`` (the equal-weight sum of each method's min-max normalised scores, Bruch et al.
    2023); see ``fusion.py``. ``candidates`` is how many results each method contributes to the
    fusion (default ``max(4 * limit, 50)``); ``rrf_k`` is the RRF constant (60, Cormack et al. 2009).
    ``fields`` limits the returned fields (default: every non-vector field).
    """

    vector: Sequence[float] | None = None
    vector_field: str | None = None
    keyword: str | None = None
    search_fields: list[str] = field(default_factory=list)
    filter: Filter | None = None
    sorts: list[tuple[str, str]] = field(default_factory=list)
    limit: int = 10
    fields: list[str] = field(default_factory=list)
    candidates: int | None = None
    rrf_k: int = 60
    fusion: str = "rrf"

    @property
    def n_candidates(self) -> int:
        return self.candidates or max(4 * self.limit, 50)


class StorageEngine(ABC):
    """The tables of one database. Every write is one transaction: it happens completely or not at
    all, and a reader never sees half of it. Methods raise ``TableNotFoundError`` for a missing
    table and ``StorageError`` subclasses (naming the field) for bad rows or queries.
    """

    @abstractmethod
    def create_table(self, table: str, schema: TableSchema) -> bool:
        """Create ``table``; False (and no change) when it exists already."""

    @abstractmethod
    def table_exists(self, table: str) -> bool: ...

    @abstractmethod
    def get_schema(self, table: str) -> TableSchema: ...

    @abstractmethod
    def list_tables(self) -> list[str]: ...

    @abstractmethod
    def upsert(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert ``rows``, replacing any stored row with the same ``_id``, in one transaction.
        Vector fields are float sequences; returns the number of rows written."""

    @abstractmethod
    def delete_by_ids(self, table: str, ids: Sequence[str]) -> int:
        """Delete rows by ``_id``; returns how many existed."""

    @abstractmethod
    def delete_by_filter(self, table: str, flt: Filter) -> int: ...

    @abstractmethod
    def truncate(self, table: str) -> None:
        """Delete every row; the schema (and vector dimensions) stay."""

    @abstractmethod
    def drop(self, table: str) -> bool:
        """Remove the table and its indexes; False when it did not exist."""

    @abstractmethod
    def count(self, table: str) -> int: ...

    @abstractmethod
    def search(self, table: str, request: SearchRequest) -> list[dict[str, Any]]:
        """Rows as dicts with a ``_score`` (higher is better: cosine similarity or ``-L2 distance``
        for vectors, ``-bm25`` for full text, for hybrid the RRF sum or the convex sum in [0, 2],
        absent for filter-only). Raises ``StorageError`` naming ``fusion`` for an unknown fusion."""

    @abstractmethod
    def checkpoint(self) -> None:
        """Make committed writes durable in the main database file (e.g. a WAL checkpoint)."""

    @abstractmethod
    def close(self) -> None: ...
