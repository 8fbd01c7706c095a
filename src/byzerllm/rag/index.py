"""Document Q&A: build an index of a folder of documents, retrieve, and answer with citations.

``DocumentIndex`` keeps three tables in the built-in store (``ByzerStorage``): ``<name>_chunks``
(text, BM25 full-text field, vector, citation), ``<name>_files`` (one row per indexed file with
its SHA-256 and chunk count) and ``<name>_index`` (the embedding deployment and vector size it was
built with). A build embeds only files whose content changed. A file's record loses its SHA-256
before the first of its chunks is written and gets it back after the last, so an interrupted
build leaves every file with a SHA-256 complete, and the next build redoes (or, if the file is
gone, removes) the rest. Retrieval is ``vector`` (k-NN), ``fulltext`` (BM25, Chinese segmented) or
``hybrid`` (both, fused by a convex combination of normalised scores by default), optionally
reranked by a rerank deployment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..apps.byzer_storage.engine import check_fusion
from ..apps.byzer_storage.simple_api import ByzerStorage, DataType, FieldOption
from ..errors import InvalidRequestError, ModelNotFoundError
from .chunking import chunk_sections
from .loaders import iter_documents, load

MODES = ("hybrid", "vector", "fulltext")
ANSWER_PROMPT = """Answer the question using only the numbered sources below. Cite the sources you use as [1], [2].
If the sources do not contain the answer, say so.

{sources}

Question: {question}"""


@dataclass
class Hit:
    """A retrieved chunk: its ``text``, ``source`` file, ``page`` (PDF) or ``heading`` path, and
    ``score`` (the retrieval's or the reranker's; higher is better) and the chunk's ``id``."""

    text: str
    source: str
    page: int | None
    heading: str
    score: float
    id: str = ""

    def citation(self) -> str:
        if self.page is not None:
            return f"{self.source} p.{self.page}"
        return f"{self.source} § {self.heading}" if self.heading else self.source


@dataclass
class BuildStats:
    """What a build did: files seen, embedded (new or changed), unchanged, removed; chunks written."""

    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Answer:
    """``text`` (the model's answer), ``sources`` (the hits given as context, numbered from 1) and
    ``cited`` (the 1-based numbers of sources the answer cites as ``[n]``)."""

    text: str
    sources: list[Hit]
    cited: list[int]

    def format_sources(self) -> str:
        """The numbered sources, one per line, cited ones marked with ``*``."""
        return "Sources:\n" + "\n".join(
            f"{'*' if i in self.cited else ' '}[{i}] {hit.citation()}" for i, hit in enumerate(self.sources, 1)
        )

    def format(self) -> str:
        """The answer followed by its numbered sources."""
        return f"{self.text.strip()}\n\n{self.format_sources()}"


class DocumentIndex:
    """An index named ``name`` in the store at ``base_dir`` (see ``ByzerStorage``), embedded with
    the deployment ``emb_model``. ``llm`` is the ``ByzerLLM`` client (one is made when None).
    ``max_chars`` is the chunk size (see ``chunking.size``); ``parallel`` the embedding batches in
    flight during a build (match the embedding deployment's workers).

    The first ``build`` creates the index and records its embedding deployment and vector size;
    ``emb_model=None`` then means the recorded one. Vectors of two models cannot be compared, so
    another ``emb_model`` is refused: build a new index (another ``name``) or ``drop`` this one.

    Raises ``InvalidRequestError``: ``param="emb_model"`` when it differs from the one the index
    was built with, ``param="name"`` when searching an index that was never built (the message
    lists the indexes in the store), ``param="mode"`` / ``"fusion"`` / ``"query"`` for bad search
    input, ``param="source_dir"`` for a missing folder.
    """

    def __init__(
        self,
        name: str = "default",
        emb_model: str | None = None,
        base_dir: str | None = None,
        llm: Any = None,
        max_chars: int = 1000,
        parallel: int = 2,
    ) -> None:
        self.name = name
        self.chunks = ByzerStorage(None, "rag", f"{name}_chunks", base_dir=base_dir)
        self.files = ByzerStorage(None, "rag", f"{name}_files", base_dir=base_dir)
        self.info = ByzerStorage(None, "rag", f"{name}_index", base_dir=base_dir)
        self.recorded = self._recorded()
        self._dim: int | None = None
        built_with = self.recorded.get("emb_model")
        if emb_model is None and not built_with and self.exists():
            raise InvalidRequestError(
                f"index {name!r} records no embedding deployment (an earlier version built it); pass the "
                "emb_model it was built with",
                param="emb_model",
            )
        if emb_model is None:
            emb_model = built_with or "emb"
        elif built_with and emb_model != built_with:
            raise InvalidRequestError(
                f"index {name!r} was built with emb_model {built_with!r}, not {emb_model!r}: vectors of "
                f"different models cannot be compared; use {built_with!r}, or build another index",
                param="emb_model",
            )
        self.emb_model = emb_model
        for store in (self.chunks, self.files, self.info):
            store.emb_model = emb_model
        if llm is None:
            import byzerllm

            llm = byzerllm.ByzerLLM()
        self.llm = llm
        self.max_chars = max_chars
        self.parallel = parallel

    def _recorded(self) -> dict[str, Any]:
        """What the index's first build recorded (``emb_model``, ``source_dir``); empty before it."""
        if not self.info.table_exists():
            return {}
        rows = self.info.query_builder().set_limit(1).execute()
        return rows[0] if rows else {}

    def exists(self) -> bool:
        """Whether a build has created this index."""
        return self.chunks.table_exists()

    @property
    def dim(self) -> int | None:
        """The size of the index's vectors (fixed by the first one stored; None before)."""
        if self._dim is None and self.exists():  # read once it is set: it never changes
            self._dim = next(
                f.dim for f in self.chunks.engine.get_schema(self.chunks.table).fields if f.name == "vector"
            )
        return self._dim

    def _create(self, source_dir: Path) -> None:
        """Create the tables at the first build; refuse a folder other than the recorded one (a
        build removes the files its folder lacks)."""
        folder = str(source_dir.resolve())
        built_from = self.recorded.get("source_dir")
        if built_from and built_from != folder:
            raise InvalidRequestError(
                f"index {self.name!r} was built from {built_from}, not {folder}: a build removes the files "
                "its folder lacks; build another index (another name), or drop this one first",
                param="source_dir",
            )
        if not self.chunks.table_exists():
            self.chunks.schema_builder().add_field("_id", DataType.STRING).add_field(
                "source", DataType.STRING
            ).add_field("page", DataType.LONG).add_field("heading", DataType.STRING, [FieldOption.NO_INDEX]).add_field(
                "content", DataType.STRING, [FieldOption.ANALYZE]
            ).add_field("text", DataType.STRING, [FieldOption.NO_INDEX]).add_array_field(
                "vector", DataType.FLOAT
            ).execute()
        if not self.files.table_exists():
            self.files.schema_builder().add_field("_id", DataType.STRING).add_field(
                "sha256", DataType.STRING
            ).add_field("chunks", DataType.LONG).execute()
        if not self.info.table_exists():
            self.info.schema_builder().add_field("_id", DataType.STRING).add_field(
                "emb_model", DataType.STRING
            ).add_field("source_dir", DataType.STRING).execute()
        self._folder = folder

    def _record(self) -> None:
        """Record the embedding deployment and folder once a file has been embedded with them (a
        deployment name that does not exist is never recorded)."""
        if not self.recorded:
            self.recorded = {"_id": "index", "emb_model": self.emb_model, "source_dir": self._folder}
            self.info.engine.upsert(self.info.table, [self.recorded])

    def _check_dim(self, dim: int) -> None:
        """Refuse vectors of another size than the index holds."""
        held = self.dim
        if held and held != dim:
            raise InvalidRequestError(
                f"embedding deployment {self.emb_model!r} returns {dim}-dimensional vectors but index "
                f"{self.name!r} holds {held}-dimensional ones: it now serves another model; "
                "deploy the index's model under that name again, or build another index",
                param="emb_model",
            )

    def _missing(self) -> InvalidRequestError:
        names = sorted(t.removesuffix("_chunks") for t in self.chunks.engine.list_tables() if t.endswith("_chunks"))
        return InvalidRequestError(
            f"index {self.name!r} does not exist in {self.chunks.path}; existing: {', '.join(names) or 'none'}"
            " (build it with `byzerllm rag build` or DocumentIndex.build)",
            param="name",
        )

    def drop(self) -> None:
        """Remove the index: its chunks, file records and what its first build recorded."""
        for store in (self.chunks, self.files, self.info):
            if store.table_exists():
                store.drop()
        self.recorded, self._dim = {}, None

    def _known_files(self) -> dict[str, str]:
        rows = self.files.query_builder().set_limit(1_000_000).execute()
        return {r["_id"]: r["sha256"] for r in rows}

    def _delete_file(self, source: str) -> None:
        self.chunks.query_builder().and_filter().add_condition("source", source).build().delete()

    def build(
        self, source_dir: str, progress: Callable[[str, int, int], None] | None = None, batch_size: int = 64
    ) -> BuildStats:
        """Index the supported files under ``source_dir`` (PDF, Markdown, HTML, DOCX, TXT).
        Unchanged files (same SHA-256) are skipped, changed ones re-chunked and re-embedded, and
        files gone from the folder removed. ``progress(file, done, total)`` is called per file.
        A file that cannot be read or embedded is reported in ``BuildStats.errors`` (its previous
        chunks, if any, stay) and the build goes on. Raises ``InvalidRequestError`` with
        ``param="emb_model"`` when the deployment's vectors differ in size from the index's,
        ``param="source_dir"`` when the folder does not exist or is not the one the index was built
        from, and ``ModelNotFoundError`` when the embedding deployment does not exist."""
        root = Path(source_dir)
        paths = list(iter_documents(root))
        self._create(root)
        known = self._known_files()
        stats = BuildStats(files=len(paths))
        seen = set()
        for done, path in enumerate(paths, 1):
            source = path.relative_to(root).as_posix()
            seen.add(source)
            try:  # one bad file must not stop the build; its previous chunks, if any, stay
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if known.get(source) == digest:
                    stats.unchanged += 1
                else:
                    n = self._index_file(path, source, batch_size)
                    # recorded last: a file is skipped next time only once all its chunks are stored
                    self.files.engine.upsert(self.files.table, [{"_id": source, "sha256": digest, "chunks": n}])
                    stats.chunks += n
                    stats.indexed += 1
            except Exception as exc:
                # but a missing or mismatched embedding deployment would fail every file alike
                if isinstance(exc, ModelNotFoundError) or getattr(exc, "param", None) == "emb_model":
                    raise
                stats.errors.append(f"{source}: {exc}")
            if progress:
                progress(source, done, len(paths))
        for source in set(known) - seen:
            self._delete_file(source)
            self.files.delete_by_ids([source])
            stats.removed += 1
        self.chunks.commit()
        self.files.commit()
        return stats

    def _index_file(self, path: Path, source: str, batch_size: int) -> int:
        """Chunk and embed the whole file, then write it: a file that fails to embed leaves its
        previous chunks (if any) as they were, and none of its new ones."""
        chunks = chunk_sections(load(path, source), self.max_chars)
        # the heading path is part of what is embedded and searched: it says what the text is about
        contents = [f"{c.section.heading}\n{c.text}" if c.section.headings else c.text for c in chunks]
        batches = [range(i, min(i + batch_size, len(chunks))) for i in range(0, len(chunks), batch_size)]
        # batches in flight at once: each goes to a free worker of the embedding deployment
        with ThreadPoolExecutor(self.parallel) as pool:
            embedded = list(
                pool.map(lambda b: [r.output for r in self.llm.emb(self.emb_model, [contents[i] for i in b])], batches)
            )
        if embedded:
            self._check_dim(len(embedded[0][0]))
            self._record()
        stale = {
            r["_id"]
            for r in self.chunks.query_builder()
            .and_filter()
            .add_condition("source", source)
            .build()
            .set_fields(["_id"])
            .set_limit(1_000_000)
            .execute()
        }
        # marked as being written (no SHA-256): if this stops half-way, the next build redoes the
        # file, or removes its chunks if the file is gone, whatever its previous record said
        self.files.engine.upsert(self.files.table, [{"_id": source, "sha256": "", "chunks": 0}])
        for batch, vectors in zip(batches, embedded, strict=True):
            rows = [
                {
                    "_id": f"{source}#{i}",
                    "source": source,
                    "page": chunks[i].section.page or 0,
                    "heading": chunks[i].section.heading,
                    "content": contents[i],
                    "text": chunks[i].text,
                    "vector": v,
                }
                for i, v in zip(batch, vectors, strict=True)
            ]
            stale.difference_update(r["_id"] for r in rows)
            self.chunks.write_builder().add_items(rows, vector_fields=["vector"], search_fields=["content"]).execute()
        if stale:  # the previous version had more chunks
            self.chunks.delete_by_ids(sorted(stale))
        return len(chunks)

    def search(
        self,
        query: str,
        top_k: int = 5,
        mode: str = "hybrid",
        rerank_model: str | None = None,
        candidates: int = 50,
        fusion: str = "convex",
    ) -> list[Hit]:
        """The ``top_k`` chunks for ``query`` by ``mode`` (``hybrid`` | ``vector`` | ``fulltext``).

        ``hybrid`` takes the best ``candidates`` of each method and fuses them in the store
        (``QueryBuilder.set_fusion``): ``fusion="convex"`` (default) adds the two min-max
        normalised scores with equal weights (a convex combination, which Bruch et al. 2023, "An
        Analysis of Fusion Functions for Hybrid Retrieval", found better than RRF);
        ``fusion="rrf"`` uses reciprocal rank fusion. On this project's evaluation sets convex
        fusion was at least as good as either method alone and RRF was not (bench/rag_recall.py).
        With ``rerank_model`` the best ``candidates`` are rescored by that deployment and the
        ``top_k`` best kept. Raises ``InvalidRequestError``: ``param="mode"`` / ``"fusion"`` /
        ``"query"`` for an unknown mode or fusion or an empty query, ``param="name"`` when the
        index was never built, ``param="emb_model"`` when the embedding deployment's vectors are
        not the size the index holds."""
        if mode not in MODES:
            raise InvalidRequestError(f"mode {mode!r} is unknown; accepted: {', '.join(MODES)}", param="mode")
        check_fusion(fusion)  # before the query is embedded
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("query must be a non-empty string", param="query")
        if not self.exists():
            raise self._missing()
        vector = self.llm.emb_query(query, model=self.emb_model)[0].output if mode != "fulltext" else None
        if vector is not None:
            self._check_dim(len(vector))
        q = (
            self.chunks.query_builder()
            .set_limit(max(candidates, top_k) if rerank_model else top_k)
            .set_candidates(candidates)
            .set_fusion(fusion)
        )
        if mode != "fulltext":
            q.set_vector_query(vector, fields=["vector"])
        if mode != "vector":
            q.set_search_query(query, fields=["content"])
        hits = [
            Hit(r["text"], r["source"], r["page"] or None, r["heading"], float(r["_score"]), r["_id"])
            for r in q.execute()
        ]
        if rerank_model and hits:
            [ranked] = self.llm.emb_rerank(rerank_model, sentence_pairs=[[query, h.text] for h in hits])
            score = {text: s for (_, text), s in ranked.output}
            for h in hits:
                h.score = score[h.text]
            hits.sort(key=lambda h: -h.score)
        return hits[:top_k]

    def _prompt(self, question: str, hits: list[Hit]) -> list[dict[str, str]]:
        sources = "\n\n".join(f"[{i}] ({h.citation()})\n{h.text}" for i, h in enumerate(hits, 1))
        return [{"role": "user", "content": ANSWER_PROMPT.format(sources=sources, question=question)}]

    def ask(
        self,
        question: str,
        model: str,
        top_k: int = 5,
        mode: str = "hybrid",
        rerank_model: str | None = None,
        llm_config: dict[str, Any] | None = None,
    ) -> Answer:
        """Retrieve, then answer with deployment ``model`` from the retrieved chunks only."""
        hits = self.search(question, top_k, mode, rerank_model)
        [resp] = self.llm.chat_oai(self._prompt(question, hits), model=model, llm_config=llm_config or {})
        return Answer(resp.output, hits, cited_numbers(resp.output, len(hits)))

    def stream_ask(
        self,
        question: str,
        model: str,
        top_k: int = 5,
        mode: str = "hybrid",
        rerank_model: str | None = None,
        llm_config: dict[str, Any] | None = None,
    ) -> tuple[list[Hit], Iterator[str]]:
        """``ask`` streamed: the hits at once, and an iterator of text deltas."""
        hits = self.search(question, top_k, mode, rerank_model)
        chunks = self.llm.stream_chat_oai(
            self._prompt(question, hits), model=model, llm_config=llm_config or {}, delta_mode=True
        )
        return hits, (delta for delta, _ in chunks)


def cited_numbers(text: str, n: int) -> list[int]:
    """The distinct source numbers ``[n]`` cited in ``text`` (1..n), ascending."""
    return sorted({int(m) for m in re.findall(r"\[(\d+)\]", text) if 1 <= int(m) <= n})
