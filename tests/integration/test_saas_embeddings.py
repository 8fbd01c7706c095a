"""``saas/openai`` embedding deployments on the in-process client (no Ray) in front of real
OpenAI-compatible servers: llama-cpp-python's server (``python -m llama_cpp.server --embedding
true``) on all-MiniLM-L6-v2 written as a GGUF, and on the built-in chat model, which declares no
pooling and so gets per-token vectors from that server."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import byzerllm
from byzerllm.backends.models import resolve_model_path
from byzerllm.errors import UpstreamError

from ..conftest import free_port, wait_http

pytestmark = pytest.mark.integration
pytest.importorskip("llama_cpp.server.app")

KEY = "sk-emb-test-9876"
PANDA = "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China."
PARIS = "Paris is the capital and largest city of France."


@contextlib.contextmanager
def llama_server(model: str, alias: str, log: Path) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server serving embeddings of ``model``, asking for ``KEY``;
    yields its API root and stops the process (killed if it lingers) on exit."""
    port = free_port()
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                model,
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_threads",
                "1",
                "--n_ctx",
                "512",
                "--embedding",
                "true",
                "--api_key",
                KEY,
                "--verbose",
                "False",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        # /docs answers without the key once the model is loaded (the app loads it before serving)
        wait_http(f"http://127.0.0.1:{port}/docs", proc, lambda: log.read_text()[-3000:], seconds=180)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def minilm_server(tmp_path_factory):
    pytest.importorskip("gguf")
    from ..gguf_bert import write_bert_gguf

    out = tmp_path_factory.mktemp("emb-server")
    gguf = write_bert_gguf(resolve_model_path("builtin:all-minilm-l6-v2"), out / "minilm.gguf", "mean")
    with llama_server(str(gguf), "minilm", out / "log.txt") as base:
        yield base


def deploy(llm: byzerllm.SimpleByzerLLM, name: str, base_url: str, model: str, api_key: str = KEY) -> None:
    llm.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name=name,
        infer_params={"saas.base_url": base_url, "saas.model": model, "saas.api_key": api_key, "saas.backoff": 0.01},
    )


def test_saas_embeddings_emb_query_and_rerank_on_a_llama_cpp_server(minilm_server):
    texts = ["the cat sat on the mat", "使用 apt-get install 安装软件包", "Stock prices fell."]
    upstream = httpx.post(
        minilm_server + "/embeddings",
        json={"model": "minilm", "input": texts},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ).json()
    dim = len(upstream["data"][0]["embedding"])
    assert dim == 384
    with byzerllm.SimpleByzerLLM() as llm:
        deploy(llm, "saas_emb", minilm_server, "minilm")
        out = llm.emb("saas_emb", texts)
        assert len(out) == 3 and all(len(r.output) == dim for r in out)
        for r, d in zip(out, upstream["data"], strict=True):  # the upstream's vectors, in input order
            assert r.output == pytest.approx(d["embedding"], abs=1e-5)
        assert out[0].metadata["input_tokens_count"] == upstream["usage"]["prompt_tokens"]
        [q] = llm.emb_query("where did the cat sit?", model="saas_emb")
        assert len(q.output) == dim

        [single] = llm.emb_rerank("saas_emb", sentence_pairs=["query", "passage"])
        assert single.output[0] == ["query", "passage"] and isinstance(single.output[1], float)
        pairs = [["what is panda?", "hi"], ["what is panda?", PANDA], ["what is panda?", PARIS]]
        [ranked] = llm.emb_rerank("saas_emb", sentence_pairs=pairs)
        assert sorted(map(tuple, (p for p, _ in ranked.output))) == sorted(map(tuple, pairs))
        scores = [s for _, s in ranked.output]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
        assert ranked.output[0][0] == ["what is panda?", PANDA]


def test_saas_embedding_upstream_errors_are_upstream_errors(minilm_server, tmp_path):
    with byzerllm.SimpleByzerLLM() as llm:
        deploy(llm, "wrong_key", minilm_server, "minilm", api_key="sk-wrong")
        with pytest.raises(UpstreamError, match="answered 401.*Invalid API key") as err:
            llm.emb("wrong_key", ["hello"])
        assert err.value.status == 401 and err.value.attempts == 1 and err.value.status_code == 502
        # SmolLM2 declares no pooling and the server has no pooling flag: it sends per-token vectors
        with llama_server(resolve_model_path("builtin:smollm2"), "smollm2", tmp_path / "log.txt") as chat_base:
            deploy(llm, "unpooled", chat_base, "smollm2")
            with pytest.raises(UpstreamError, match=r"one per token\), not one vector per input") as err:
                llm.emb("unpooled", ["hello world", "a second input"])
        assert err.value.attempts == 1 and err.value.provider == "openai"
