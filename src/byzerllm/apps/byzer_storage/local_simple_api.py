"""``byzerllm.apps.byzer_storage.local_simple_api``: Byzer-LLM's path of ``LocalByzerStorage``
(re-exports)."""

from .simple_api import (
    DataType,
    FieldOption,
    LocalByzerStorage,
    QueryBuilder,
    SchemaBuilder,
    SortOption,
    WriteBuilder,
)

__all__ = [
    "DataType",
    "FieldOption",
    "LocalByzerStorage",
    "QueryBuilder",
    "SchemaBuilder",
    "SortOption",
    "WriteBuilder",
]
