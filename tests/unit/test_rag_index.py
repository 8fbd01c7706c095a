"""``DocumentIndex`` in this process (``SimpleByzerLLM``, no Ray) on the real built-in embedding
model: the recorded embedding model, errors for a missing index or another model, a file that
fails half-way, and reranking of the retrieved candidates."""

from __future__ import annotations

import pytest

import byzerllm
from byzerllm.errors import InvalidRequestError, ModelNotFoundError
from byzerllm.rag import DocumentIndex

from .test_embedding_backends import tiny_cross_encoder


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    client = byzerllm.SimpleByzerLLM()
    client.deploy(
        model_path="builtin:all-minilm-l6-v2",
        pretrained_model_type="custom/emb",
        udf_name="u_emb",
        infer_params={"n_threads": 1},
    )
    folder = tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "ce")
    client.deploy(
        model_path=str(folder), pretrained_model_type="custom/bge_rerank", udf_name="u_rerank", infer_params={}
    )
    yield client
    client.close()


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "guide.md").write_text(
        "# Guide\n\n## Install\n\nRun install.sh first.\n\n## Colours\n\nThe palette has red, green and blue.\n"
    )
    (folder / "notes.txt").write_text("Deployments are pools of workers on Ray.\n")
    return folder


def test_the_index_remembers_its_embedding_model(llm, docs, tmp_path):
    store = str(tmp_path / "store")
    index = DocumentIndex("kb", emb_model="u_emb", base_dir=store, llm=llm)
    assert not index.exists()
    with pytest.raises(InvalidRequestError, match="index 'kb' does not exist.*existing: none") as missing:
        index.search("palette")
    assert missing.value.param == "name"

    stats = index.build(str(docs))
    assert stats.indexed == 2 and index.recorded["emb_model"] == "u_emb" and index.dim == 384

    again = DocumentIndex("kb", base_dir=store, llm=llm)  # no emb_model: the recorded one
    assert again.emb_model == "u_emb" and again.search("palette colours", top_k=1)[0].source == "guide.md"
    with pytest.raises(InvalidRequestError, match="built with emb_model 'u_emb', not 'other'") as other:
        DocumentIndex("kb", emb_model="other", base_dir=store, llm=llm)
    assert other.value.param == "emb_model"
    with pytest.raises(InvalidRequestError, match="existing: kb") as typo:
        DocumentIndex("kbb", base_dir=store, llm=llm).search("palette")
    assert typo.value.param == "name"

    again.drop()
    assert not again.exists() and DocumentIndex("kb", emb_model="other", base_dir=store, llm=llm).recorded == {}


def test_vectors_of_another_size_are_refused(llm, docs, tmp_path):
    store = str(tmp_path / "store")
    DocumentIndex("kb", emb_model="u_emb", base_dir=store, llm=llm).build(str(docs))
    # the same deployment name now serves a model with 576-dimensional vectors
    other = byzerllm.SimpleByzerLLM()
    other.deploy(
        model_path="builtin:smollm2",
        pretrained_model_type="custom/auto",
        udf_name="u_emb",
        infer_params={"embedding": True, "n_threads": 1},
    )
    try:
        index = DocumentIndex("kb", base_dir=store, llm=other)
        with pytest.raises(InvalidRequestError, match="576-dimensional vectors but index 'kb' holds 384") as bad:
            index.search("palette", mode="hybrid")
        assert bad.value.param == "emb_model"
        assert index.search("palette", mode="fulltext")  # needs no vector
        (docs / "notes.txt").write_text("Workers run one backend each.\n")
        with pytest.raises(InvalidRequestError, match="576-dimensional"):
            index.build(str(docs))
        assert index.chunks.count() == 3 and index._known_files()["notes.txt"]  # nothing changed
    finally:
        other.close()


def test_a_file_that_fails_half_way_leaves_no_chunks(llm, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.md").write_text("\n\n".join(f"# Part {i}\n\nSection {i} of a long text." for i in range(6)))
    (docs / "short.txt").write_text("A short file.\n")
    index = DocumentIndex("kb", emb_model="u_emb", base_dir=str(tmp_path / "store"), llm=llm, parallel=1)
    calls = {"n": 0}
    real_emb = llm.emb

    def failing_second_batch(model, texts, **kw):  # the embedding deployment fails mid-file
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker lost")
        return real_emb(model, texts, **kw)

    llm.emb = failing_second_batch
    try:
        stats = index.build(str(docs), batch_size=2)
    finally:
        del llm.emb
    assert stats.indexed == 1 and len(stats.errors) == 1 and stats.errors[0].startswith("long.md")
    assert {h.source for h in index.search("section text", top_k=10)} == {"short.txt"}
    redo = index.build(str(docs), batch_size=2)
    assert (redo.indexed, redo.unchanged, redo.chunks) == (1, 1, 6) and index.chunks.count() == 7


def test_rerank_orders_the_candidates_by_the_rerankers_scores(llm, docs, tmp_path):
    index = DocumentIndex("kb", emb_model="u_emb", base_dir=str(tmp_path / "store"), llm=llm)
    index.build(str(docs))
    query = "which colours are there?"
    plain = index.search(query, top_k=3)
    reranked = index.search(query, top_k=3, rerank_model="u_rerank")
    assert {h.id for h in reranked} == {h.id for h in plain}  # 3 chunks: the same candidates
    [expected] = llm.emb_rerank("u_rerank", sentence_pairs=[[query, h.text] for h in plain])
    assert [h.text for h in reranked] == [text for (_, text), _ in expected.output]
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_another_folder_or_a_missing_deployment_is_refused_and_nothing_is_lost(llm, docs, tmp_path):
    store = str(tmp_path / "store")
    typo = DocumentIndex("kb", emb_model="u_emb_typo", base_dir=store, llm=llm)
    with pytest.raises(ModelNotFoundError):
        typo.build(str(docs))
    assert typo.recorded == {}  # the name that does not exist was not recorded

    index = DocumentIndex("kb", emb_model="u_emb", base_dir=store, llm=llm)
    assert index.build(str(docs)).indexed == 2
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InvalidRequestError, match="was built from .*docs, not .*other") as moved:
        index.build(str(other))  # an empty folder would otherwise remove every file
    assert moved.value.param == "source_dir" and index.chunks.count() == 3

    index.info.drop()  # as an index built before the embedding deployment was recorded
    with pytest.raises(InvalidRequestError, match="records no embedding deployment") as old:
        DocumentIndex("kb", base_dir=store, llm=llm)
    assert old.value.param == "emb_model"
    assert DocumentIndex("kb", emb_model="u_emb", base_dir=store, llm=llm).build(str(docs)).unchanged == 2
