"""``byzerllm rag build`` / ``byzerllm rag query``: document Q&A over a folder, with citations."""

from __future__ import annotations

import click

from .common import _connect, _opt, err, handle_errors

# options every rag command takes
index_name = _opt("name", default="default", show_default=True, help="Index name.")
base_dir_option = _opt(
    "base_dir", default=None, help="Store folder (default $BYZERLLM_STORAGE_DIR or ~/.byzerllm/storage)."
)


@click.group()
def rag() -> None:
    """Index a folder of documents and ask questions about it."""


def _index(name: str, emb_model: str, base_dir: str | None, ray_address: str, must_exist: bool = False):
    from ..apps.byzer_storage.simple_api import database_path
    from ..errors import InvalidRequestError
    from ..rag.index import DocumentIndex

    if must_exist and not (path := database_path(None, "rag", base_dir)).exists():
        # a mistyped --base_dir must not leave a new empty store behind
        raise InvalidRequestError(
            f"no document index in {path.parent.parent} (none was built there; build one with `byzerllm rag build`)",
            param="base_dir",
        )
    _connect(ray_address)
    return DocumentIndex(name, emb_model=emb_model, base_dir=base_dir)


@rag.command()
@_opt("source_dir", required=True, help="Folder of PDF, Markdown, HTML, DOCX and TXT files.")
@_opt("emb_model", required=True, help="Embedding deployment, e.g. emb.")
@index_name
@base_dir_option
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def build(source_dir, emb_model, name, base_dir, ray_address):
    """Index SOURCE_DIR; files unchanged since the last build are skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    index = _index(name, emb_model, base_dir, ray_address)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("indexing", total=None)

        def progress(source: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"indexing {source[-40:]:<40}")

        stats = index.build(source_dir, progress)
    click.echo(
        f"files: {stats.files}  indexed: {stats.indexed}  unchanged: {stats.unchanged}  "
        f"removed: {stats.removed}  chunks written: {stats.chunks}"
    )
    for line in stats.errors:
        err.print(f"[yellow]skipped[/] {line}", soft_wrap=True)


@rag.command()
@_opt("query", required=True, help="The question.")
@_opt("model", required=True, help="Chat deployment that writes the answer.")
@_opt("emb_model", default=None, help="Embedding deployment (default: the one the index was built with).")
@index_name
@base_dir_option
@_opt("top_k", default=5, type=int, show_default=True, help="Chunks given to the model.")
@_opt("mode", default="hybrid", type=click.Choice(["hybrid", "vector", "fulltext"]), show_default=True)
@_opt("rerank_model", default=None, help="Rerank deployment applied to the retrieved candidates.")
@_opt("max_length", default=512, type=int, show_default=True, help="Tokens of the answer at most.")
@click.option("--no_stream", "--no-stream", "no_stream", is_flag=True, help="Print the answer when complete.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def query(query, model, emb_model, name, base_dir, top_k, mode, rerank_model, max_length, no_stream, ray_address):
    """Answer QUERY from the index, citing file and page or heading."""
    from ..rag.index import Answer, cited_numbers

    index = _index(name, emb_model, base_dir, ray_address, must_exist=True)
    config = {"max_length": max_length}
    if no_stream:
        answer = index.ask(query, model, top_k, mode, rerank_model, config)
    else:
        hits, deltas = index.stream_ask(query, model, top_k, mode, rerank_model, config)
        text = ""
        for delta in deltas:
            text += delta
            click.echo(delta, nl=False)
        click.echo()
        answer = Answer(text, hits, cited_numbers(text, len(hits)))
    if no_stream:
        click.echo(answer.text.strip())
    click.echo("\n" + answer.format_sources())
