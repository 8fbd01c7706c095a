"""The console's documents: the built-in store's tables (``GET /v1/storage/tables``,
``POST /v1/storage/search``) and document Q&A indexes (``GET/POST /v1/rag/indexes``,
``POST /v1/rag/ask``), over ``byzerllm.apps.byzer_storage`` and ``byzerllm.rag``.

The store is the one at the server's ``storage_dir`` (``ByzerStorage``'s default base dir when
None: ``$BYZERLLM_STORAGE_DIR`` or ``~/.byzerllm/storage``), cluster ``byzerai_store``: each
database is the file ``<base>/byzerai_store/<database>.db``, and ``DocumentIndex`` keeps its
tables in database ``rag``. Listing or searching never creates a database file.

An index build started here runs in a thread of the server; its state (building, then ready or
failed, with the files done out of the folder's total and the chunks the index holds) lives in
this server's memory until the next build of that name."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ...apps.byzer_storage.engine import SearchRequest, StorageEngine, TableSchema
from ...apps.byzer_storage.simple_api import DEFAULT_CLUSTER, ByzerStorage, default_base_dir
from ...errors import ByzerLLMError, InvalidRequestError, ModelNotFoundError
from ..state import Server, ServerDep
from .common import error_responses

# the database DocumentIndex keeps its tables in, and the suffixes of an index's tables
RAG_DATABASE = "rag"
CHUNKS, FILES, INFO = "_chunks", "_files", "_index"
MODES = ("vector", "fulltext", "hybrid")

router = APIRouter()


# --- models ------------------------------------------------------------------------------------
class StorageField(BaseModel):
    name: str
    type: str = Field(description="as declared: string, long, float, double, boolean, array(float), map(k,v)...")


class StorageVectorField(BaseModel):
    name: str
    dim: int | None = Field(description="the vectors' size (None before the first one is written)")


class StorageTable(BaseModel):
    database: str
    table: str
    rows: int
    fields: list[StorageField]
    vector_fields: list[StorageVectorField]
    text_fields: list[str] = Field(description="the full-text (BM25) fields")


class StorageTableList(BaseModel):
    data: list[StorageTable]


class StorageSearchRequest(BaseModel):
    database: str
    table: str
    query: str
    mode: Literal["vector", "fulltext", "hybrid"] = "hybrid"
    limit: int = Field(10, ge=1, le=1000)
    emb_model: str | None = Field(
        None,
        description="the embedding deployment that embeds the query (vector, hybrid); default: the one an index "
        "recorded (rag database), else required",
    )
    vector_field: str | None = Field(None, description="default: the table's first vector field")
    fusion: Literal["rrf", "convex"] = Field("rrf", description="how hybrid fuses its two rankings")


class StorageSearchResponse(BaseModel):
    data: list[dict[str, Any]] = Field(description="rows (without vector fields) with their _score, best first")


class RagIndexProgress(BaseModel):
    files_done: int
    files_total: int
    chunks: int = Field(description="chunks the index holds")
    file: str | None = Field(None, description="the file done last")
    indexed: int | None = Field(None, description="once finished: files embedded (new or changed)")
    unchanged: int | None = None
    removed: int | None = None
    errors: list[str] = Field(default_factory=list, description="once finished: files skipped, with the reason")


class RagIndex(BaseModel):
    name: str
    emb_model: str | None
    source_dir: str | None
    chunks: int
    files: int
    state: Literal["ready", "building", "failed"]
    progress: RagIndexProgress | None = Field(description="of the last build this server ran (None: none ran)")
    error: str | None


class RagIndexList(BaseModel):
    data: list[RagIndex]


class RagIndexRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,100}$")
    source_dir: str = Field(description="a folder on the server's machine")
    emb_model: str | None = Field(None, description="the embedding deployment; None: the one the index was built with")


class RagAskRequest(BaseModel):
    index: str
    question: str
    model: str | None = Field(None, description="the chat deployment; None: the server client's default model")
    top_k: int = Field(5, ge=1, le=50)
    mode: Literal["hybrid", "vector", "fulltext"] = "hybrid"
    max_tokens: int | None = Field(None, ge=1)


class RagSource(BaseModel):
    n: int = Field(description="its number in the prompt, cited as [n]")
    source: str = Field(description="the file, relative to the indexed folder")
    text: str
    score: float
    citation: str = Field(description="file p.N or file § Heading")
    cited: bool = Field(description="whether the answer cites it")


class RagAskResponse(BaseModel):
    answer: str
    sources: list[RagSource]


# --- state -------------------------------------------------------------------------------------
# documents one build from the console may index (a folder of more is for ``byzerllm rag build``)
MAX_BUILD_FILES = 10_000
log = logging.getLogger("byzerllm.server.documents")


@dataclass
class Build:
    """A build this server started: ``state`` building, ready or failed; ``progress`` replaced
    whole at each file (so a reader never sees half an update)."""

    name: str
    emb_model: str
    source_dir: str
    progress: dict[str, Any]
    state: str = "building"
    error: str | None = None


class Documents:
    """What these routes keep per app: one engine per database file (its vector cache stays warm
    between searches), one ``DocumentIndex`` per index, the builds this server ran."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engines: dict[Path, tuple[int, StorageEngine]] = {}
        self.indexes: dict[tuple[Path, str], Any] = {}
        self.builds: dict[tuple[Path, str], Build] = {}

    def engine(self, path: Path) -> StorageEngine:
        """The engine of the database file ``path`` (opened again when the file was replaced)."""
        from ...apps.byzer_storage.sqlite_engine import SqliteEngine

        with self.lock:
            inode = path.stat().st_ino if path.exists() else 0
            held = self.engines.get(path)
            if held is None or held[0] != inode:
                if held is not None:
                    held[1].close()
                self.engines[path] = (path.stat().st_ino, SqliteEngine(path))
            return self.engines[path][1]

    def index(self, base: Path, name: str, llm: Any, emb_model: str | None = None):
        """The ``DocumentIndex`` ``name``, made again when what its first build recorded (model,
        folder) changed; ``emb_model`` serves until a first build records one."""
        from ...rag import DocumentIndex

        record = _index_record(self.engine(_db_path(base, RAG_DATABASE)), name)
        with self.lock:
            index = self.indexes.get((base, name))
            if index is None or index.recorded != record:
                index = DocumentIndex(name, emb_model=record.get("emb_model") or emb_model, base_dir=str(base), llm=llm)
                self.indexes[(base, name)] = index
            return index


async def documents_of(request: Request) -> Documents:
    state = request.app.state
    if getattr(state, "documents", None) is None:  # made on first use (the event loop: no race)
        state.documents = Documents()
    return state.documents


DocumentsDep = Annotated[Documents, Depends(documents_of)]


def _base(srv: Server) -> Path:
    return Path(srv.storage_dir).expanduser() if srv.storage_dir else default_base_dir()


def _databases(base: Path) -> list[str]:
    return sorted(p.stem for p in (base / DEFAULT_CLUSTER).glob("*.db") if p.is_file())


def _db_path(base: Path, database: str) -> Path:
    return base / DEFAULT_CLUSTER / f"{database}.db"


# --- storage -----------------------------------------------------------------------------------
def _table_info(database: str, table: str, engine: StorageEngine) -> StorageTable:
    schema = engine.get_schema(table)
    return StorageTable(
        database=database,
        table=table,
        rows=engine.count(table),
        fields=[StorageField(name=f.name, type=f.type_text or f.kind) for f in schema.fields],
        vector_fields=[StorageVectorField(name=f.name, dim=f.dim) for f in schema.of_kind("vector")],
        text_fields=[f.name for f in schema.analyzed],
    )


def _tables(docs: Documents, base: Path) -> list[StorageTable]:
    out = []
    for database in _databases(base):
        engine = docs.engine(_db_path(base, database))
        out += [_table_info(database, table, engine) for table in engine.list_tables()]
    return out


@router.get("/v1/storage/tables", response_model=StorageTableList, responses=error_responses(401, 500))
async def tables(srv: ServerDep, docs: DocumentsDep) -> StorageTableList:
    return StorageTableList(data=await asyncio.to_thread(_tables, docs, _base(srv)))


def _open_table(docs: Documents, base: Path, database: str, table: str) -> tuple[StorageEngine, TableSchema]:
    """The engine and schema of ``database.table``; ``InvalidRequestError`` naming ``database`` or
    ``table`` (with the existing ones) when either does not exist."""
    databases = _databases(base)
    if database not in databases:
        raise InvalidRequestError(
            f"database {database!r} does not exist; databases: {', '.join(databases) or 'none'}",
            param="database",
            accepted=databases,
        )
    engine = docs.engine(_db_path(base, database))
    names = engine.list_tables()
    if table not in names:
        raise InvalidRequestError(
            f"table {table!r} does not exist in database {database!r}; tables: {', '.join(names) or 'none'}",
            param="table",
            accepted=names,
        )
    return engine, engine.get_schema(table)


def _recorded_emb_model(docs: Documents, base: Path, database: str, table: str) -> str | None:
    """The embedding deployment a ``DocumentIndex`` recorded for its chunks table ``table``."""
    if database != RAG_DATABASE or not table.endswith(CHUNKS):
        return None
    return _index_record(docs.engine(_db_path(base, database)), table.removesuffix(CHUNKS)).get("emb_model")


async def _embed(srv: Server, emb_model: str, text: str) -> list[float]:
    """``text``'s embedding by deployment ``emb_model``; an unknown deployment is a 400 naming
    ``emb_model`` (it is a field of the request, not the model the request is for)."""
    try:
        [out] = await srv.timed(srv.llm.async_emb(srv.deployment(emb_model), [text]))
    except ModelNotFoundError as exc:
        raise InvalidRequestError(str(exc), param="emb_model", available=getattr(exc, "available", None)) from None
    return list(out.output)


@router.post(
    "/v1/storage/search", response_model=StorageSearchResponse, responses=error_responses(400, 401, 500, 503, 504)
)
async def search(body: StorageSearchRequest, srv: ServerDep, docs: DocumentsDep) -> StorageSearchResponse:
    """The table's rows for ``query`` by ``mode``: ``vector`` (k-NN on the query's embedding),
    ``fulltext`` (BM25 over every full-text field) or ``hybrid`` (both, fused by ``fusion``)."""
    if not body.query.strip():
        raise InvalidRequestError("query must be a non-empty string", param="query")
    base = _base(srv)
    engine, schema = await asyncio.to_thread(_open_table, docs, base, body.database, body.table)
    vectors, texts = [f.name for f in schema.of_kind("vector")], [f.name for f in schema.analyzed]
    possible = [m for m in MODES if (m != "vector" or vectors) and (m != "fulltext" or texts)]
    possible = [m for m in possible if m != "hybrid" or (vectors and texts)]
    if body.mode not in possible:
        missing = "a vector field" if body.mode != "fulltext" and not vectors else "a full-text field"
        raise InvalidRequestError(
            f"mode {body.mode!r} needs {missing}, which table {body.table!r} has not; accepted: "
            f"{', '.join(possible) or 'none'}",
            param="mode",
            accepted=possible,
        )
    store = ByzerStorage(None, body.database, body.table, base_dir=str(base), engine=engine)
    query = store.query_builder().set_limit(body.limit).set_fusion(body.fusion)
    if body.mode != "fulltext":
        vector_field = body.vector_field or vectors[0]
        if vector_field not in vectors:
            raise InvalidRequestError(
                f"field {vector_field!r} is not a vector field of table {body.table!r}; accepted: {', '.join(vectors)}",
                param="vector_field",
                accepted=vectors,
            )
        emb_model = body.emb_model or await asyncio.to_thread(
            _recorded_emb_model, docs, base, body.database, body.table
        )
        if not emb_model:
            raise InvalidRequestError(
                f"a {body.mode} search embeds the query: name the embedding deployment that made the vectors of "
                f"{body.table}.{vector_field}",
                param="emb_model",
            )
        vector = await _embed(srv, emb_model, body.query)
        dim = schema.field(vector_field).dim
        if dim and len(vector) != dim:
            raise InvalidRequestError(
                f"embedding deployment {emb_model!r} returns {len(vector)}-dimensional vectors but "
                f"{body.table}.{vector_field} holds {dim}-dimensional ones",
                param="emb_model",
            )
        query.set_vector_query(vector, fields=[vector_field])
    if body.mode != "vector":
        query.set_search_query(body.query, fields=[])  # every full-text field
    return StorageSearchResponse(data=await asyncio.to_thread(query.execute))


# --- document Q&A --------------------------------------------------------------------------------
def _index_record(engine: StorageEngine, name: str) -> dict[str, Any]:
    """What the index's first build recorded (``emb_model``, ``source_dir``); empty before."""
    if not engine.table_exists(name + INFO):
        return {}
    rows = engine.search(name + INFO, SearchRequest(limit=1))
    return rows[0] if rows else {}


def _stored_indexes(docs: Documents, base: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"emb_model", "source_dir", "chunks", "files"}}`` of the indexes in the store."""
    if RAG_DATABASE not in _databases(base):
        return {}
    engine = docs.engine(_db_path(base, RAG_DATABASE))
    tables = engine.list_tables()
    out = {}
    for name in (t.removesuffix(CHUNKS) for t in tables if t.endswith(CHUNKS)):
        record = _index_record(engine, name)
        out[name] = {
            "emb_model": record.get("emb_model"),
            "source_dir": record.get("source_dir"),
            "chunks": engine.count(name + CHUNKS),
            "files": engine.count(name + FILES) if name + FILES in tables else 0,
        }
    return out


def _index_item(name: str, stored: dict[str, Any] | None, build: Build | None) -> RagIndex:
    stored = stored or {}
    progress = build.progress if build else None
    return RagIndex(
        name=name,
        emb_model=stored.get("emb_model") or (build.emb_model if build else None),
        source_dir=stored.get("source_dir") or (build.source_dir if build else None),
        chunks=stored.get("chunks", progress["chunks"] if progress else 0),
        files=stored.get("files", 0),
        state=build.state if build else "ready",  # type: ignore[arg-type]
        progress=RagIndexProgress(**progress) if progress else None,
        error=build.error if build else None,
    )


def _indexes(docs: Documents, base: Path) -> list[RagIndex]:
    stored = _stored_indexes(docs, base)
    builds = {name: b for (b_base, name), b in list(docs.builds.items()) if b_base == base}
    return [_index_item(name, stored.get(name), builds.get(name)) for name in sorted(stored.keys() | builds.keys())]


@router.get("/v1/rag/indexes", response_model=RagIndexList, responses=error_responses(401, 500))
async def indexes(srv: ServerDep, docs: DocumentsDep) -> RagIndexList:
    return RagIndexList(data=await asyncio.to_thread(_indexes, docs, _base(srv)))


def _prepare(srv: Server, base: Path, body: RagIndexRequest) -> tuple[Any, list[Path]]:
    """Check a build before it starts: the folder, the embedding deployment (the index's own
    when it has one) and, for an index built before, the same folder. Returns the index and the
    folder's documents."""
    from ...rag import DocumentIndex
    from ...rag.loaders import iter_documents

    root = Path(srv.documents_root or Path.cwd()).resolve()
    folder_path = Path(body.source_dir).expanduser().resolve()
    if not folder_path.is_relative_to(root):  # a key must not open the server's other folders
        raise InvalidRequestError(
            f"source_dir must be a folder under {root} (byzerllm serve --documents_root)", param="source_dir"
        )
    emb_model = srv.deployment(body.emb_model) if body.emb_model else None
    deployed = srv.llm.list_deployments()
    if (emb_model or "") and emb_model not in deployed:
        raise InvalidRequestError(
            f"no embedding deployment named {emb_model!r}; deployed: {', '.join(sorted(deployed)) or 'none'}",
            param="emb_model",
            available=sorted(deployed),
        )
    paths = list(iter_documents(str(folder_path)))  # InvalidRequestError naming source_dir
    if len(paths) > MAX_BUILD_FILES:
        raise InvalidRequestError(
            f"{folder_path} holds {len(paths)} documents; a build from the console takes {MAX_BUILD_FILES} at most "
            "(byzerllm rag build has no limit)",
            param="source_dir",
        )
    index = DocumentIndex(body.name, emb_model=emb_model, base_dir=str(base), llm=srv.llm)
    folder = str(folder_path)
    built_from = index.recorded.get("source_dir")
    if built_from and built_from != folder:
        raise InvalidRequestError(
            f"index {body.name!r} was built from {built_from}, not {folder}: a build removes the files its folder "
            "lacks; build another index (another name)",
            param="source_dir",
        )
    deployed = srv.llm.list_deployments()
    if index.emb_model not in deployed:
        raise InvalidRequestError(
            f"no embedding deployment named {index.emb_model!r}; deployed: {', '.join(sorted(deployed)) or 'none'}",
            param="emb_model",
            available=sorted(deployed),
        )
    return index, paths


def _run_build(docs: Documents, base: Path, build: Build, index: Any) -> None:
    """The build thread: ``index.build`` with its progress in ``build``, then ready or failed."""

    def progress(source: str, done: int, total: int) -> None:
        chunks = index.chunks.count()
        build.progress = {**build.progress, "files_done": done, "files_total": total, "file": source, "chunks": chunks}

    try:
        stats = index.build(build.source_dir, progress)
    except Exception as exc:  # reported as the index's state, for the console to show
        if isinstance(exc, ByzerLLMError):
            build.error = str(exc)
        else:  # its text may hold paths or document content: the log has it
            log.error("the build of index %r failed", build.name, exc_info=exc)
            build.error = f"{type(exc).__name__} (details in the server's log)"
        build.state = "failed"
        return
    build.progress = {
        **build.progress,
        "files_done": stats.files,
        "files_total": stats.files,
        "chunks": index.chunks.count(),
        "indexed": stats.indexed,
        "unchanged": stats.unchanged,
        "removed": stats.removed,
        "errors": stats.errors,
    }
    with docs.lock:
        docs.indexes[(base, build.name)] = index
    build.state = "ready"


@router.post("/v1/rag/indexes", status_code=202, response_model=RagIndex, responses=error_responses(400, 401, 500, 503))
async def build_index(body: RagIndexRequest, srv: ServerDep, docs: DocumentsDep) -> RagIndex:
    """Starts building (or updating) index ``name`` from ``source_dir`` in a thread and answers at
    once (state building); ``GET /v1/rag/indexes`` follows its progress."""
    base = _base(srv)

    def check_not_building() -> None:
        running = docs.builds.get((base, body.name))
        if running and running.state == "building":
            raise InvalidRequestError(f"index {body.name!r} is being built already", param="name")

    check_not_building()
    index, paths = await asyncio.to_thread(_prepare, srv, base, body)
    chunks = await asyncio.to_thread(lambda: index.chunks.count() if index.exists() else 0)
    build = Build(
        name=body.name,
        emb_model=index.emb_model,
        source_dir=str(Path(body.source_dir).resolve()),
        progress={"files_done": 0, "files_total": len(paths), "chunks": chunks, "file": None},
    )
    check_not_building()  # again, then registered with no await between: two requests cannot both start
    docs.builds[(base, body.name)] = build
    threading.Thread(
        target=_run_build, args=(docs, base, build, index), name=f"rag-build-{body.name}", daemon=True
    ).start()
    stored = (await asyncio.to_thread(_stored_indexes, docs, base)).get(body.name)
    return _index_item(body.name, stored, build)


@router.post("/v1/rag/ask", response_model=RagAskResponse, responses=error_responses(400, 401, 404, 500, 502, 503, 504))
async def ask(body: RagAskRequest, srv: ServerDep, docs: DocumentsDep) -> RagAskResponse:
    """Retrieves the ``top_k`` chunks of ``index`` for ``question`` and answers with deployment
    ``model`` from them only, citing them as ``[n]``."""
    if not body.question.strip():
        raise InvalidRequestError("question must be a non-empty string", param="question")
    model = body.model or getattr(srv.llm, "default_model_name", None)
    if not model:
        raise InvalidRequestError("name the chat deployment that answers", param="model")
    base = _base(srv)
    stored = await asyncio.to_thread(_stored_indexes, docs, base)
    if body.index not in stored:
        raise InvalidRequestError(
            f"index {body.index!r} does not exist; indexes: {', '.join(sorted(stored)) or 'none'}",
            param="index",
            accepted=sorted(stored),
        )
    build = docs.builds.get((base, body.index))
    index = await asyncio.to_thread(docs.index, base, body.index, srv.llm, build.emb_model if build else None)
    llm_config = {"max_length": body.max_tokens} if body.max_tokens else {}
    answer = await srv.timed(
        asyncio.to_thread(
            index.ask, body.question, srv.deployment(model), top_k=body.top_k, mode=body.mode, llm_config=llm_config
        )
    )
    return RagAskResponse(
        answer=answer.text,
        sources=[
            RagSource(n=n, source=h.source, text=h.text, score=h.score, citation=h.citation(), cited=n in answer.cited)
            for n, h in enumerate(answer.sources, 1)
        ],
    )
