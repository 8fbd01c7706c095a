"""The store with a real embedding deployment: ``byzerllm storage start --enable_emb`` deploys it,
``storage.emb`` and text in vector fields / vector queries go through it."""

from __future__ import annotations

import numpy as np
import pytest

from byzerllm.apps.byzer_storage import ByzerStorage, DataType, FieldOption

from ..conftest import run_cli

pytestmark = pytest.mark.integration
EMB = "t_store_emb"
DOCS = [
    "Ray schedules the worker pools of a deployment",
    "SQLite keeps each database in a single file",
    "BM25 ranks documents by the words they share with the query",
    "The cat sleeps on the warm windowsill",
]


@pytest.fixture(scope="module")
def emb_deployment(llm, tmp_path_factory):
    base = tmp_path_factory.mktemp("store")
    proc = run_cli(
        "storage", "start", "--enable_emb", "--emb_model", EMB, "--base_dir", str(base), timeout=300, check=True
    )
    assert f"Deployed embedding model {EMB}" in proc.stdout and "384 dims" in proc.stdout
    again = run_cli("storage", "start", "--enable_emb", "--emb_model", EMB, "--base_dir", str(base), check=True)
    assert "already deployed" in again.stdout
    yield base
    llm.undeploy(EMB)


def test_emb_and_text_vector_fields(emb_deployment):
    s = ByzerStorage("byzerai_store", "kb", "notes", base_dir=str(emb_deployment), emb_model=EMB)
    s.schema_builder().add_field("content", DataType.STRING, [FieldOption.ANALYZE]).add_field(
        "raw", DataType.STRING, [FieldOption.NO_INDEX]
    ).add_array_field("vector", DataType.FLOAT).execute()
    v = s.emb("hello world")
    assert len(v) == 384 and abs(np.linalg.norm(v) - 1) < 1e-3
    s.write_builder().add_items(
        [{"_id": str(i), "content": d, "raw": d, "vector": d} for i, d in enumerate(DOCS)],
        vector_fields=["vector"],
        search_fields=["content"],
    ).execute()
    # the stored vector is the deployment's embedding of the text
    stored = s.query_builder().and_filter().add_condition("_id", "3").build().set_fields(["vector"]).execute()
    assert np.allclose(stored[0]["vector"], s.emb(DOCS[3]), atol=1e-4)
    hits = s.query_builder().set_vector_query("a kitten napping in the sun", fields=["vector"]).execute()
    assert hits[0]["_id"] == "3"
    hybrid = (
        s.query_builder()
        .set_vector_query("one file per database", "vector")
        .set_search_query("SQLite database", "content")
        .set_limit(2)
        .execute()
    )
    assert hybrid[0]["_id"] == "1"
