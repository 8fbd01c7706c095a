"""The engine-process backend on the built-in model: llama.cpp's llama-server started, supervised
and stopped by a Ray worker, serving the client and the HTTP server."""

from __future__ import annotations

import json
import time

import psutil
import pydantic
import pytest
from fastapi.testclient import TestClient

import byzerllm
from byzerllm.errors import WorkerDiedError

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "Name three colours."}]
LONG = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]


def engines() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "llama-server"]


@pytest.fixture(scope="module")
def engine_chat(ray_cluster):
    assert not engines()
    llm = byzerllm.ByzerLLM().setup_infer_backend("llama_server").setup_worker_concurrency(4)
    llm.deploy(model_path="builtin:smollm2", udf_name="engine_chat", infer_params={"n_threads": 1})
    yield llm, "engine_chat"
    if llm.is_model_exist("engine_chat"):
        llm.undeploy("engine_chat")


class Colour(pydantic.BaseModel):
    name: str
    hex_code: str


def test_chat_stream_and_typed_output_through_the_engine(engine_chat):
    llm, name = engine_chat
    meta = llm.get_meta(model=name)
    assert meta["engine"] == "llama-server" and meta["parallel"] == 4 and meta["backend"] == "ray/llama_server"
    [resp] = llm.chat_oai(ASK, model=name, llm_config={"max_length": 12, "seed": 1})
    assert resp.output and 0 < resp.metadata["generated_tokens_count"] <= 12
    deltas = [d for d, _ in llm.stream_chat_oai(ASK, model=name, delta_mode=True, llm_config={"max_length": 12})]
    assert len(deltas) > 1
    [typed] = llm.chat_oai(ASK, model=name, response_class=Colour, llm_config={"max_length": 60})
    assert isinstance(typed.value, Colour), typed.metadata


def test_the_http_server_streams_from_the_engine(engine_chat):
    llm, name = engine_chat
    from byzerllm.server import create_app

    with TestClient(create_app(llm)) as http:
        body = {"model": name, "messages": ASK, "max_tokens": 8}
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        r = http.post("/v1/chat/completions", json={**body, "stream": True})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert len(events) > 2 and events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_concurrent_requests_share_the_engine(engine_chat):
    import asyncio

    llm, name = engine_chat

    async def many():
        return await asyncio.gather(
            *(llm.async_chat_oai(ASK, model=name, llm_config={"max_length": 8}) for _ in range(8))
        )

    answers = asyncio.run(many())
    assert all(a[0].metadata["generated_tokens_count"] > 0 for a in answers)
    assert llm.stat(name)["state"] == [4]


@pytest.fixture
def opened(monkeypatch):
    """The streams this process opened on an engine itself (``LocalStreams.open`` calls)."""
    from byzerllm.runtime.ray.local_streams import LocalStreams

    calls = []
    real = LocalStreams.open
    monkeypatch.setattr(LocalStreams, "open", lambda self, *a: calls.append(a) or real(self, *a))
    return calls


SHORT = {"max_length": 6, "ignore_eos": True}


def test_a_caller_on_the_engines_node_reads_its_streams_itself(engine_chat, opened):
    llm, name = engine_chat
    assert llm.runtime._lookup(name).local == [True]
    before = llm.stat(name)
    deltas = [d for d, _ in llm.stream_chat_oai(ASK, model=name, delta_mode=True, llm_config=SHORT)]
    after = llm.stat(name)
    assert len(opened) == 1 and len(deltas) > 1 and after["state"] == [4]
    assert sum(after["total_requests"]) == sum(before["total_requests"]) + 1
    assert after["completion_tokens"] - before["completion_tokens"] == 6
    assert after["prompt_tokens"] > before["prompt_tokens"]


def test_a_local_stream_left_early_or_aborted_gives_its_slot_back(engine_chat):
    llm, name = engine_chat
    config = {"max_length": 400, "ignore_eos": True}
    left = llm.stream_chat_oai(LONG, model=name, delta_mode=True, llm_config=config)
    next(left)
    left.close()  # the reader stops: the engine's connection closes and the slot comes back
    aborted = llm.stream_chat_oai(LONG, model=name, delta_mode=True, llm_config={**config, "gen.request_id": "ab-1"})
    next(aborted)
    llm.abort("ab-1", model=name)
    assert [meta.finish_reason for _, meta in aborted][-1] == "cancelled"
    deadline = time.monotonic() + 10
    while llm.stat(name)["state"] != [4] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert llm.stat(name)["state"] == [4]


def test_a_caller_elsewhere_gets_the_stream_relayed_by_the_worker(engine_chat, opened):
    llm, name = engine_chat
    route = llm.runtime._lookup(name)
    route.local[0] = False  # as for a caller on another node
    before = llm.stat(name)["completion_tokens"]
    try:
        deltas = [d for d, _ in llm.stream_chat_oai(ASK, model=name, delta_mode=True, llm_config=SHORT)]
    finally:
        route.local[0] = True
    assert not opened and len(deltas) > 1 and llm.stat(name)["state"] == [4]
    assert llm.stat(name)["completion_tokens"] - before == 6


def test_an_engine_killed_mid_stream_is_started_again(engine_chat):
    llm, name = engine_chat
    [engine] = engines()
    stream = llm.stream_chat_oai(LONG, model=name, llm_config={"max_length": 2000, "ignore_eos": True})
    next(stream)
    engine.kill()
    with pytest.raises(WorkerDiedError, match="engine process"):
        for _ in stream:
            pass
    [resp] = llm.chat_oai(ASK, model=name, llm_config={"max_length": 4})
    assert resp.metadata["generated_tokens_count"] > 0
    [again] = engines()
    assert again.pid != engine.pid


def test_undeploy_leaves_no_engine_behind(engine_chat):
    llm, name = engine_chat
    assert len(engines()) == 1
    llm.undeploy(name)
    deadline = time.monotonic() + 15
    while engines() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not engines()


def test_embeddings_through_the_engine_are_llama_cpps(ray_cluster):
    import numpy as np

    texts = ["The sea is blue.", "Paris is the capital of France."]
    local = byzerllm.SimpleByzerLLM()
    local.setup_infer_backend("llama_cpp").deploy(
        model_path="builtin:smollm2", udf_name="emb_local", infer_params={"embedding": True}
    )
    llm = byzerllm.ByzerLLM().setup_infer_backend("llama_server")
    llm.deploy(model_path="builtin:smollm2", udf_name="engine_emb", infer_params={"n_threads": 1, "embedding": True})
    try:
        meta = llm.get_meta(model="engine_emb")
        assert meta["tasks"] == ["embed", "rerank"] and meta["pooling"] == "mean" and meta["embedding_dim"] == 576
        ours = np.array([r.output for r in llm.emb("engine_emb", texts)])
        theirs = np.array([r.output for r in local.emb("emb_local", texts)])
        assert ours.shape == theirs.shape == (2, 576)
        cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        assert (cosine > 0.99).all(), cosine  # one model, one pooling: the same vector up to float error
        with pytest.raises(byzerllm.errors.InvalidRequestError) as refused:
            llm.chat_oai(ASK, model="engine_emb")
        assert refused.value.param == "model" and "serves embed" in str(refused.value)
    finally:
        llm.undeploy("engine_emb")
        local.close()
