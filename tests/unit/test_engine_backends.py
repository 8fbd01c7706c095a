"""Engine processes and their launchers: command lines from the typed options, the GPU check of
vLLM, and supervision of a real server process (Python's http.server standing in for an engine)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import pytest

from byzerllm.backends import get_backend_class
from byzerllm.backends.engine import EngineProcess
from byzerllm.backends.llama_server import llama_server_command
from byzerllm.backends.vllm import vllm_command
from byzerllm.errors import BackendError, InvalidRequestError


def test_llama_server_runs_parallel_sequences_with_their_own_context():
    cls = get_backend_class("llama_server")
    cfg = cls.check_options(cls.deploy_options({"n_threads": "2", "max_model_len": 2048}, worker_concurrency=8))
    cmd = llama_server_command("/bin/llama-server", "/m.gguf", 9000, cfg)
    flag = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("--")}
    assert flag["--parallel"] == "8" and flag["--ctx-size"] == str(2048 * 8) and flag["--threads"] == "2"
    assert "--cont-batching" in cmd and "--jinja" in cmd and flag["--host"] == "127.0.0.1"
    assert cls.deploy_options({"parallel": 3}, worker_concurrency=8)["parallel"] == 3


def test_a_llama_server_embedding_engine_pools_and_checks_its_pooling():
    cls = get_backend_class("llama_server")
    cfg = cls.check_options({"embedding": "true", "pooling": "CLS"})
    cmd = llama_server_command("/bin/llama-server", "/m.gguf", 9000, cfg)
    assert cmd[cmd.index("--pooling") + 1] == "cls" and "--embeddings" in cmd
    assert "--embeddings" not in llama_server_command("/bin/llama-server", "/m.gguf", 9000, cls.check_options({}))
    with pytest.raises(InvalidRequestError, match="per token") as bad:
        cls.check_options({"embedding": True, "pooling": "none"})
    assert bad.value.param == "pooling"
    with pytest.raises(InvalidRequestError, match="add embedding=true"):
        cls.check_options({"pooling": "mean"})


def test_a_llama_server_vision_engine_gets_its_mmproj():
    cls = get_backend_class("llama_server")
    cfg = cls.check_options({"mmproj": "/models/mmproj-f16.gguf"})
    cmd = llama_server_command("/bin/llama-server", "/m.gguf", 9000, cfg)
    assert cmd[cmd.index("--mmproj") + 1] == "/models/mmproj-f16.gguf"
    assert "--mmproj" not in llama_server_command("/bin/llama-server", "/m.gguf", 9000, cls.check_options({}))


def test_image_and_audio_parts_are_refused_by_a_text_only_backend():
    from byzerllm.types import ChatRequest

    echo = get_backend_class("echo")("", {})
    assert echo.get_meta()["input_modalities"] == ["text"]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    for part, kind in ((image, "image"), (audio, "audio")):
        request = ChatRequest(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": [part]}])
        with pytest.raises(InvalidRequestError, match=f"has an {kind} part") as err:
            echo.check_request(request)
        assert err.value.param == "conversations[1].content"
    echo.check_request(ChatRequest(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]))


def test_vllm_takes_the_documents_backend_options():
    cls = get_backend_class("ray/vllm")  # Byzer-LLM's name
    assert cls is get_backend_class("vllm")
    cfg = cls.check_options(
        cls.deploy_options(
            {"max_model_len": "28000", "gpu_memory_utilization": "0.8", "quantization": "awq", "enforce_eager": "true"},
            worker_concurrency=4,
        )
    )
    cmd = vllm_command("/py", "/models/qwen", 9001, cfg)
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(cmd)
    for part in ("--max-model-len 28000", "--gpu-memory-utilization 0.8", "--quantization awq", "--max-num-seqs 4"):
        assert part in text
    assert "--enforce-eager" in cmd and "--trust-remote-code" not in cmd and "--port 9001" in text


def test_vllm_without_a_gpu_is_refused_with_the_alternatives(monkeypatch):
    import byzerllm.backends.vllm as vllm

    monkeypatch.setattr(vllm, "gpu_count", lambda: 0)
    with pytest.raises(BackendError, match="needs an NVIDIA GPU.*llama_server"):
        get_backend_class("vllm")("/models/qwen", {})


def test_an_engine_is_supervised_and_stopped(tmp_path):
    (tmp_path / "health").write_text("ok")
    engine = EngineProcess(
        "http.server",
        lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        health_path="/health",
        start_timeout=30,
    )
    engine.start()
    try:
        port, pid = engine.port, engine.proc.pid
        assert engine.alive() and not engine.ensure()
        os.kill(pid, signal.SIGKILL)
        engine.proc.wait()
        assert engine.ensure() and engine.alive() and engine.restarts == 1
        assert engine.port == port and engine.proc.pid != pid  # same address, new process
    finally:
        engine.stop()
    assert not engine.alive()


def test_an_engine_that_exits_at_start_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    engine = EngineProcess("broken", lambda port: [sys.executable, "-c", "print('bad flag --x'); raise SystemExit(2)"])
    with pytest.raises(BackendError, match="exited with status 2 while starting: bad flag --x"):
        engine.start()
    engine.stop()
    assert list(tmp_path.iterdir()) == []  # its output has no file left behind


def test_an_engine_that_is_not_ready_in_time_says_what_it_printed():
    engine = EngineProcess(
        "slow",
        lambda port: [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(60)"],
        start_timeout=1.5,
    )
    with pytest.raises(BackendError, match="not ready after 1.5s: loading"):
        engine.start()
    assert not engine.alive()
    with pytest.raises(BackendError, match="not ready after 1.5s: loading"):
        engine.ensure()  # the next request tries again, with the same output file
    assert not engine.alive() and engine.restarts == 1


def test_a_gguf_serving_concurrent_requests_defaults_to_the_batching_engine(monkeypatch):
    import byzerllm.backends.llama_server as llama_server
    from byzerllm.client.byzerllm import _default_backend

    monkeypatch.setattr(llama_server, "llama_server_binary", lambda: "/bin/llama-server")
    assert _default_backend("builtin:smollm2", "custom/auto", 1, {}) == "llama_cpp"
    assert _default_backend("builtin:smollm2", "custom/auto", 4, {"n_threads": 2}) == "llama_server"
    # an option only llama_cpp takes keeps the deploy working as before
    assert _default_backend("builtin:smollm2", "custom/auto", 4, {"n_ctx": 2048}) == "llama_cpp"
    assert _default_backend("builtin:all-minilm-l6-v2", "custom/auto", 4, {}) == "sentence_transformers"

    def missing():
        raise BackendError("llama-server is not installed")

    monkeypatch.setattr(llama_server, "llama_server_binary", missing)
    assert _default_backend("builtin:smollm2", "custom/auto", 4, {}) == "llama_cpp"
