"""The SQL functions on a DuckDB connection (vectorised: each Arrow batch of rows fans out)."""

from __future__ import annotations

from typing import Any

from . import calls


def register_functions(con: Any, functions: dict[str, calls.ModelFunction]) -> None:
    """Create ``llm_param``, ``llm_prompt``, ``llm_result``, ``llm_error``, ``llm_stack`` and one function
    per entry of ``functions`` (its name -> the deployment's ``ModelFunction``) on ``con``; a
    function of that name made by an earlier registration is replaced."""
    import duckdb
    import pyarrow as pa

    def create(name: str, fn: Any, params: list, returns: Any, **kw: Any) -> None:
        try:
            con.remove_function(name)
        except (duckdb.InvalidInputException, duckdb.CatalogException):
            pass  # not registered before
        # "special": NULL inputs reach the functions (which map them to NULL), and they may return NULL
        con.create_function(name, fn, params, returns, null_handling="special", **kw)

    text = "VARCHAR"
    create("llm_param", calls.llm_param, [duckdb.sqltype("MAP(VARCHAR, VARCHAR)")], text)
    create("llm_prompt", calls.llm_prompt, [text, duckdb.sqltype("VARCHAR[]")], text)
    create("llm_result", calls.llm_result, [text], text)
    create("llm_error", calls.llm_error, [text], text)
    create("llm_stack", calls.llm_stack, [text, text], text)
    for name, model_fn in functions.items():
        if model_fn.kind is None:
            create(name, _batch(model_fn, pa.string(), model_fn.batch), [text], text, type="arrow", side_effects=True)
        else:
            from .schema import arrow_type, duckdb_type

            kind = ("struct", [("value", model_fn.kind), ("error", "string")])
            returns = duckdb.sqltype(duckdb_type(kind))
            fn = _batch(model_fn, arrow_type(kind), model_fn.typed_batch)
            create(name, fn, [text], returns, type="arrow", side_effects=True)


def _batch(model_fn: calls.ModelFunction, arrow_type: Any, run: Any) -> Any:
    """An Arrow UDF of one parameter (DuckDB counts the parameters of the Python function)."""
    import pyarrow as pa

    def batch(requests: Any) -> Any:
        return pa.array(run(requests.to_pylist()), type=arrow_type)

    return batch
