"""The built-in vector + full-text store: ``ByzerStorage`` over an embedded SQLite engine, or over a
PostgreSQL server (``postgres_engine``, ``postgres_server``: install the ``postgres`` extra)."""

from .engine import Condition, FieldSpec, Filter, SearchRequest, StorageEngine, TableSchema
from .errors import StorageError, TableNotFoundError, UnknownFieldError, VectorDimensionError
from .simple_api import ByzerStorage, DataType, FieldOption, SortOption, database_path, default_base_dir

__all__ = [
    "ByzerStorage",
    "Condition",
    "DataType",
    "FieldOption",
    "FieldSpec",
    "Filter",
    "SearchRequest",
    "SortOption",
    "StorageEngine",
    "StorageError",
    "TableNotFoundError",
    "TableSchema",
    "UnknownFieldError",
    "VectorDimensionError",
    "database_path",
    "default_base_dir",
]
