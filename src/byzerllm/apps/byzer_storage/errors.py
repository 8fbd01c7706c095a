"""Errors of the store. Each is a ``byzerllm.errors.InvalidRequestError`` (bad input) or a
``ByzerLLMError``, so callers catch them like any other byzerllm error; ``param`` names the field."""

from __future__ import annotations

from ...errors import ByzerLLMError, InvalidRequestError


class StorageError(InvalidRequestError):
    """Bad input to the store: a schema, row or query it cannot accept; ``param`` names the field."""


class UnknownFieldError(StorageError):
    """A field that the table's schema does not have; ``accepted`` lists the table's fields."""


class VectorDimensionError(StorageError):
    """A vector whose length differs from the field's dimension (``expected``, ``got``)."""


class TableNotFoundError(StorageError):
    """The table does not exist in this database; ``available`` lists the tables."""

    status_code = 404
    error_type = "not_found_error"


class StorageIntegrityError(ByzerLLMError):
    """The database file failed SQLite's integrity check."""


class StorageServerError(ByzerLLMError):
    """The PostgreSQL server of the store could not be set up, started, stopped or reached; the
    message carries the server log's tail. ``param`` names a bad option (``host``, ``port``)."""

    status_code = 503
    error_type = "server_error"
