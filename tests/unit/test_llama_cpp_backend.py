"""The llama_cpp backend in-process on the real built-in model (no Ray)."""

import pytest

from byzerllm.backends import create_backend, get_backend_class
from byzerllm.backends.llama_cpp import _held_suffix
from byzerllm.errors import BackendNotFoundError, InvalidRequestError, ModelPathError, UnsupportedParameterError
from byzerllm.params import build_chat_request

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def backend():
    b = create_backend("llama_cpp", "builtin:smollm2", {})
    yield b
    b.close()


def req(text="Tell me about the sea.", **config):
    return build_chat_request([{"role": "user", "content": text}], config)


def test_held_suffix():
    assert _held_suffix("hello ##", ["###"]) == 2
    assert _held_suffix("hello", ["###"]) == 0
    assert _held_suffix("ab", ["abc", "b"]) == 2


def test_max_tokens_ends_with_length_and_exact_counts(backend):
    resp = backend.chat(req(max_length=7, seed=1, temperature=0.7))
    assert resp.finish_reason == "length"
    assert resp.generated_tokens == 7
    assert resp.input_tokens > 5
    assert 0 < resp.first_token_time <= resp.time_cost


def test_stream_joins_to_the_same_text_as_chat_with_the_same_seed(backend):
    whole = backend.chat(req(max_length=40, seed=5))
    chunks = list(backend.stream(req(max_length=40, seed=5)))
    assert "".join(c.delta for c in chunks) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason
    assert chunks[-1].generated_tokens == whole.generated_tokens
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stop_string_ends_generation_and_is_not_returned(backend):
    free = backend.chat(req(max_length=40, seed=9, temperature=0))
    words = free.text.split()
    assert len(words) > 3
    stop = " " + words[2]
    resp = backend.chat(req(max_length=40, seed=9, temperature=0, stop=[stop]))
    assert resp.finish_reason == "stop"
    assert stop not in resp.text
    assert free.text.startswith(resp.text)


def test_chinese_text_decodes_across_token_boundaries(backend):
    chunks = list(backend.stream(req("请用中文写一句话介绍北京。", max_length=60, seed=2)))
    text = "".join(c.delta for c in chunks)
    assert "\ufffd" not in text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_cancel_stops_between_tokens(backend):
    seen = []
    chunks = list(
        backend.stream(req(max_length=200, seed=1, ignore_eos=True), cancelled=lambda: len(seen) >= 3 or seen.append(1))
    )
    assert chunks[-1].finish_reason == "cancelled"
    assert chunks[-1].generated_tokens <= 4


def test_unknown_request_option_is_named(backend):
    with pytest.raises(UnsupportedParameterError, match="'mirostat'") as info:
        backend.check_request(req(mirostat=2))
    assert "top_k" in str(info.value)


def test_prompt_longer_than_the_context_is_refused():
    small = create_backend("llama_cpp", "builtin:smollm2", {"max_model_len": 64})
    with pytest.raises(InvalidRequestError, match="max_model_len is 64"):
        list(small.stream(req("word " * 200)))
    small.close()


def test_meta_describes_the_model(backend):
    meta = backend.meta()
    assert meta["backend"] == "llama_cpp"
    assert meta["support_chat_template"] is True and meta["support_stream"] is True
    assert meta["architectures"] == ["llama"]
    assert meta["max_model_len"] == 4096


def test_bad_deploy_inputs_are_named(tmp_path):
    with pytest.raises(UnsupportedParameterError, match="'n_thread'") as info:
        create_backend("llama_cpp", "builtin:smollm2", {"n_thread": 2})
    assert "n_threads" in info.value.accepted
    with pytest.raises(ModelPathError, match=str(tmp_path / "missing.gguf")):
        create_backend("llama_cpp", str(tmp_path / "missing.gguf"), {})
    with pytest.raises(ModelPathError, match="builtin:smollm2"):
        create_backend("llama_cpp", "builtin:nope", {})
    with pytest.raises(BackendNotFoundError, match="installed: llama_cpp"):
        get_backend_class("vllm")


def test_a_file_that_is_not_gguf_is_a_backend_error(tmp_path):
    from byzerllm.errors import BackendError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="could not load"):
        create_backend("llama_cpp", str(bad), {})


def test_ignore_eos_generates_exactly_max_length(backend):
    resp = backend.chat(req("Say OK.", max_length=50, ignore_eos=True, seed=3))
    assert resp.generated_tokens == 50 and resp.finish_reason == "length"
