"""Deployed models as SQL functions on DuckDB and on Spark (Byzer-LLM's ``llm_param`` / ``llm_result``
/ ``llm_stack``, guide 004 section 3).

``register(con)`` makes every chat deployment a SQL function named after it, plus the helpers of
``byzerllm.sql.calls``; ``run(con, query, dialect=...)`` runs statements written for Spark or Byzer
(``map("k", v)``, ``array(...)``) on DuckDB by transpiling them with sqlglot. docs/sql.md shows both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequestError, ModelNotFoundError
from .calls import Caller, ModelFunction

DIALECTS = ("duckdb", "spark", "hive", "postgres", "mysql", "sqlite", "bigquery", "snowflake", "trino")


@dataclass
class Registration:
    """What ``register`` created: ``functions`` (SQL name -> deployment), and ``caller``, whose
    ``rows_done`` counts the rows answered so far (for progress)."""

    engine: str
    functions: dict[str, str]
    caller: Caller | None = None
    model_functions: dict[str, ModelFunction] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the event loop thread the DuckDB functions use."""
        if self.caller is not None:
            self.caller.close()


def _engine(con: Any) -> str:
    module = type(con).__module__
    if module.startswith("pyspark"):
        return "spark"
    if module.startswith(("duckdb", "_duckdb")):
        return "duckdb"
    raise InvalidRequestError(
        f"register takes a DuckDB connection or a SparkSession, got {type(con).__name__}", param="con"
    )


def _chat_models(llm: Any, models: list[str] | None) -> list[str]:
    deployed = llm.list_deployments()
    if models is None:
        return [m for m in deployed if "chat" in llm.get_meta(model=m).get("tasks", ["chat"])]
    for m in models:
        if m not in deployed:
            raise ModelNotFoundError(
                f"model {m!r} is not deployed; deployed: {', '.join(deployed) or 'none'}", param="models"
            )
    return list(models)


def _slots(llm: Any, model: str) -> int:
    spec = llm.deployment_info(model)["spec"]
    return spec["num_workers"] * spec["worker_concurrency"]


def register(
    con: Any,
    llm: Any = None,
    models: list[str] | None = None,
    *,
    typed: dict[str, tuple[str, Any]] | None = None,
    concurrency: int | None = None,
    cache: bool = False,
) -> Registration:
    """Register the SQL functions on a DuckDB connection or a SparkSession.

    ``llm``: the client whose deployments are called (default ``ByzerLLM()``, on the connected Ray
    cluster; Spark needs one, since its executors reach the deployments through Ray). ``models``: the
    deployments to register (default: every chat deployment). ``typed``: extra functions, SQL name ->
    ``(deployment, response_class)`` (a pydantic model or a JSON schema of an object), each returning
    ``STRUCT(value STRUCT(...), error VARCHAR)``. ``concurrency``: rows in flight at once per function
    (per Spark task, where the default is the slots divided among the tasks that run at once); default the
    deployment's slots (``num_workers`` x ``worker_concurrency``):
    each row goes straight to a free worker (bench/sql.py measured more to be slower, through the
    pool's queue). ``cache``: reuse
    answers to requests with ``temperature`` 0.

    Raises ``InvalidRequestError`` (a connection of another kind, a SimpleByzerLLM for Spark, a
    schema that is not an object) and ``ModelNotFoundError`` (a listed deployment that is not there).
    """
    engine = _engine(con)
    if llm is None:
        import byzerllm

        llm = byzerllm.ByzerLLM()
    names = _chat_models(llm, models)
    typed = dict(typed or {})
    if typed:  # the typed functions' deployments must be there too (one lookup for all)
        _chat_models(llm, sorted({model for model, _ in typed.values()}))
    functions = {**{m: m for m in names}, **{name: model for name, (model, _) in typed.items()}}
    limits = {name: concurrency or _slots(llm, model) for name, model in functions.items()}
    if engine == "spark":
        from ..client.simple import SimpleByzerLLM

        if isinstance(llm, SimpleByzerLLM):
            raise InvalidRequestError(
                "Spark executors reach deployments through Ray: register with a ByzerLLM client, not a "
                "SimpleByzerLLM (whose deployments live in this process)",
                param="llm",
            )
        from .spark import register_functions

        for _, response_class in typed.values():  # fail on a bad schema here, not in an executor
            from .schema import struct_of

            struct_of(response_class)
        if concurrency is None:  # the executors share the deployment's slots
            tasks = max(con.sparkContext.defaultParallelism, 1)
            limits = {name: max(n // tasks, 1) for name, n in limits.items()}
        register_functions(con, llm, names, limits, cache, typed)
        return Registration("spark", functions)
    caller = Caller()
    model_functions = {m: ModelFunction(llm, m, caller, limits[m], cache) for m in names}
    for name, (model, response_class) in typed.items():
        model_functions[name] = ModelFunction(llm, model, caller, limits[name], cache, response_class)
    from .duckdb import register_functions

    register_functions(con, model_functions)
    return Registration("duckdb", functions, caller, model_functions)


def run(con: Any, query: str, dialect: str = "duckdb") -> Any:
    """Run ``query`` (one or more statements separated by ``;``) on ``con`` and return the result of
    the last statement (a DuckDB relation or a Spark DataFrame; None for a statement without rows).
    ``dialect`` is the SQL the query is written in; it is transpiled to the engine's with sqlglot
    (``spark`` for Byzer-SQL's ``map("k", v)`` and ``array(...)``). Raises ``InvalidRequestError``
    for an unknown dialect or a query that does not parse."""
    import sqlglot

    if dialect not in DIALECTS:
        raise InvalidRequestError(f"dialect {dialect!r} is unknown; accepted: {', '.join(DIALECTS)}", param="dialect")
    engine = _engine(con)
    if dialect == engine == "duckdb":
        return con.sql(query)  # DuckDB runs several statements and returns the last one's rows
    try:
        statements = [s for s in sqlglot.transpile(query, read=dialect, write=engine) if s.strip()]
    except sqlglot.errors.ParseError as exc:
        raise InvalidRequestError(f"the query does not parse as {dialect} SQL: {exc}", param="query") from None
    result = None
    for statement in statements:
        result = con.sql(statement)
    return result


__all__ = ["DIALECTS", "Registration", "register", "run"]
