"""``byzerllm sql``: a query on DuckDB with the deployments as SQL functions (see docs/sql.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import _connect, _fail, _opt, err, handle_errors

FORMATS = {".csv": "CSV", ".parquet": "PARQUET", ".json": "JSON"}


@click.command(name="sql")
@click.argument("query")
@_opt("dialect", default="duckdb", show_default=True, help="SQL the query is written in (spark: Byzer-SQL style).")
@_opt("output", default=None, help="Write the rows to a .csv, .parquet or .json file instead of printing them.")
@_opt("models", default=None, help="Deployments to register, comma-separated (default: every chat deployment).")
@_opt(
    "concurrency",
    default=None,
    type=int,
    help="Rows of a batch in flight at once (default: the slots of the deployment).",
)
@_opt("database", default=":memory:", show_default=True, help="A DuckDB database file to open.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def sql(query, dialect, output, models, concurrency, database, ray_address):
    """Run QUERY on DuckDB over files (read_csv('x.csv'), 'x.parquet'...) with every deployment as
    a SQL function; print the rows as a table or write them to --output."""
    import duckdb

    from .. import sql as byzer_sql

    fmt = None
    if output:
        fmt = FORMATS.get(Path(output).suffix.lower())
        if fmt is None:
            _fail(f"--output {output!r}: the file name must end in {', '.join(FORMATS)}")
    _connect(ray_address)
    con = duckdb.connect(database)
    reg = byzer_sql.register(con, models=models.split(",") if models else None, concurrency=concurrency)
    done: dict = {}

    def execute() -> None:
        try:
            rel = byzer_sql.run(con, query, dialect=dialect)
            if rel is None:
                done["rows"] = None
            elif fmt:
                rel.to_view("byzerllm_sql_output")
                target = output.replace("'", "''")
                con.execute(f"COPY byzerllm_sql_output TO '{target}' (FORMAT {fmt})")
                done["written"] = True
            else:
                done["columns"], done["rows"] = rel.columns, rel.fetchall()
        except Exception as exc:  # reported below, in this process's one-line error format
            done["error"] = exc

    worker = threading.Thread(target=execute, daemon=True)
    start = time.monotonic()
    worker.start()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("running", total=100)
        while worker.is_alive():
            worker.join(0.2)
            percent = con.query_progress() if worker.is_alive() else 100
            progress.update(
                task,
                completed=max(percent, 0),
                description=f"{reg.caller.rows_done} rows answered",
            )
    reg.close()
    if "error" in done:
        _fail(f"{type(done['error']).__name__}: {done['error']}")
    took = time.monotonic() - start
    if done.get("written"):
        err.print(f"wrote {output} ({reg.caller.rows_done} rows answered, {took:.1f}s)")
    elif done.get("rows") is not None:
        table = Table(*done["columns"])
        for row in done["rows"]:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        Console().print(table)
