"""Embedding and rerank deployments on a real Ray cluster: the built-in models and a cross-encoder."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from byzerllm import InferBackend, LLMRequest
from byzerllm.errors import InvalidRequestError

from ..unit.test_embedding_backends import PANDA, PARIS, tiny_cross_encoder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emb_models(llm, tmp_path_factory):
    """``t_emb`` (all-MiniLM-L6-v2), ``t_emb_zh`` (multilingual-e5-small) and ``t_rerank`` (a tiny
    cross-encoder deployed the way the Byzer-LLM documents deploy bge-reranker)."""
    llm.setup_num_workers(1).setup_infer_backend(None)
    llm.deploy(
        model_path="builtin:all-minilm-l6-v2",
        pretrained_model_type="custom/emb",
        udf_name="t_emb",
        infer_params={"n_threads": 1},
    )
    llm.deploy(
        model_path="builtin:multilingual-e5-small",
        pretrained_model_type="custom/emb",
        udf_name="t_emb_zh",
        infer_params={},
    )
    folder = tiny_cross_encoder(tmp_path_factory.mktemp("ce"))
    llm.setup_infer_backend(InferBackend.Transformers)
    llm.deploy(model_path=str(folder), pretrained_model_type="custom/bge_rerank", udf_name="t_rerank", infer_params={})
    llm.setup_infer_backend(None)
    yield llm
    for name in ("t_emb", "t_emb_zh", "t_rerank"):
        llm.undeploy(name)


def test_emb_returns_one_vector_per_input_in_batches(emb_models):
    llm = emb_models
    llm.setup_default_emb_model_name("t_emb")
    texts = [f"sentence number {i}" for i in range(150)]  # more than one batch of 64
    out = llm.emb(None, LLMRequest(instruction=texts))
    assert len(out) == 150 and all(len(r.output) == 384 for r in out)
    assert [r.input["instruction"] for r in out] == texts
    assert out[0].metadata["input_tokens_count"] > 150
    assert llm.get_meta(model="t_emb")["embedding_dim"] == 384
    [one] = llm.emb_query("hello")
    assert np.allclose(one.output, llm.emb("t_emb", "hello")[0].output)  # MiniLM has no query prefix
    vectors = asyncio.run(llm.async_emb("t_emb", texts))
    assert np.allclose([v.output for v in vectors], [r.output for r in out], atol=1e-5)


def test_multilingual_model_embeds_chinese_queries_and_passages(emb_models):
    llm = emb_models
    docs = [r.output for r in llm.emb("t_emb_zh", ["使用 apt-get install 安装软件包", "今天天气很好"])]
    [q] = llm.emb_query("怎么安装软件", model="t_emb_zh")
    assert np.dot(q.output, docs[0]) > np.dot(q.output, docs[1])


def test_emb_rerank_has_the_documented_shapes(emb_models):
    llm = emb_models
    [single] = llm.emb_rerank("t_rerank", sentence_pairs=["query", "passage"])
    assert single.output[0] == ["query", "passage"] and isinstance(single.output[1], float)
    pairs = [["what is panda?", "hi"], ["what is panda?", PANDA], ["what is panda?", PARIS]]
    [ranked] = llm.emb_rerank("t_rerank", sentence_pairs=pairs)
    assert sorted(map(tuple, (p for p, _ in ranked.output))) == sorted(map(tuple, pairs))
    scores = [s for _, s in ranked.output]
    assert scores == sorted(scores, reverse=True)
    # an embedding deployment reranks by cosine similarity
    llm.setup_default_emb_model_name("t_emb")
    [by_cosine] = llm.emb_rerank(sentence_pairs=pairs)
    assert by_cosine.output[0][0] == ["what is panda?", PANDA]
    [same] = asyncio.run(llm.async_emb_rerank(sentence_pairs=pairs))
    assert [p for p, _ in same.output] == [p for p, _ in by_cosine.output]


def test_bad_rerank_and_emb_input_is_named(emb_models):
    llm = emb_models
    with pytest.raises(InvalidRequestError, match="sentence_pairs"):
        llm.emb_rerank("t_rerank", sentence_pairs=[["only one"]])
    with pytest.raises(InvalidRequestError, match="reranker"):
        llm.emb("t_rerank", "text")
    with pytest.raises(InvalidRequestError, match="serves embed, rerank, not chat"):
        llm.chat_oai([{"role": "user", "content": "hi"}], model="t_emb")
    assert llm.emb("t_emb", "still serving")[0].output  # the worker lives on
