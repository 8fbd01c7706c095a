"""The transformers chat backend in-process: a tiny random Llama with SmolLM2's real tokenizer (and
chat template) for the mechanics, and the built-in SmolLM2 GGUF, dequantized, for one real load."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from byzerllm.backends import create_backend, get_backend_class  # noqa: E402
from byzerllm.backends.models import default_backend_for  # noqa: E402
from byzerllm.errors import (  # noqa: E402
    BackendError,
    InvalidRequestError,
    ModelPathError,
    UnsupportedParameterError,
)
from byzerllm.structured.layers import pick_strategy  # noqa: E402
from byzerllm.types import ChatRequest  # noqa: E402

torch.set_num_threads(1)


def req(text: str = "Tell me about pandas.", **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


@pytest.fixture(scope="module")
def folder(tiny_llama) -> Path:
    return tiny_llama


@pytest.fixture(scope="module")
def backend(folder):
    b = create_backend("transformers", str(folder), {"n_threads": 1})
    yield b
    b.close()


def text_of(chunks) -> str:
    return "".join(c.delta for c in chunks)


def test_a_stream_has_several_chunks_and_the_last_carries_counts(backend):
    chunks = list(backend.stream(req(max_tokens=24, temperature=0)))
    assert len([c for c in chunks if c.delta]) > 2
    last = chunks[-1]
    assert last.delta == "" and last.finish_reason == "length"
    assert last.input_tokens > 5 and last.generated_tokens == 24
    assert all(c.finish_reason is None for c in chunks[:-1])
    counts = [c.generated_tokens for c in chunks]
    assert counts == sorted(counts)  # running counts


def test_max_length_gives_exactly_that_many_tokens(backend):
    for n in (1, 7):
        resp = backend.chat(req(max_tokens=n, temperature=0))
        assert resp.finish_reason == "length" and resp.generated_tokens == n


def test_greedy_is_deterministic_and_a_seed_repeats_a_sample(backend):
    a = backend.chat(req(max_tokens=16, temperature=0)).text
    assert a and backend.chat(req(max_tokens=16, temperature=0)).text == a
    s1 = backend.chat(req(max_tokens=16, temperature=1.0, seed=7)).text
    assert backend.chat(req(max_tokens=16, temperature=1.0, seed=7)).text == s1


def test_a_stop_string_cuts_the_text(backend):
    full = backend.chat(req(max_tokens=30, temperature=0)).text
    words = full.split()
    assert len(words) > 4
    stop = words[3][:3]
    resp = backend.chat(req(max_tokens=30, temperature=0, stop=[stop]))
    assert resp.text == full[: full.find(stop)]
    assert resp.finish_reason == "stop" and 0 < resp.generated_tokens < 30


def test_an_end_of_turn_token_stops_and_is_not_counted_unless_ignore_eos(backend, monkeypatch):
    request = req(max_tokens=12, temperature=0)
    ids = backend._prompt_ids(request)
    out = backend.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=2)
    tokens = out[0, len(ids) :].tolist()
    k = next(i for i in range(2, 12) if tokens[i] not in tokens[:i])
    monkeypatch.setattr(backend, "eos_ids", {tokens[k]})
    resp = backend.chat(req(max_tokens=12, temperature=0))
    assert resp.finish_reason == "stop" and resp.generated_tokens == k
    resp = backend.chat(req(max_tokens=12, temperature=0, extra={"ignore_eos": True}))
    assert resp.finish_reason == "length" and resp.generated_tokens == 12


def test_cancellation_stops_generation_early(backend):
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 5

    resp = backend.chat(req(max_tokens=300, temperature=0), cancelled)
    assert resp.finish_reason == "cancelled" and 0 < resp.generated_tokens < 10


def test_closing_the_stream_early_ends_the_generation_thread(backend):
    before = threading.active_count()
    stream = backend.stream(req(max_tokens=400, temperature=0))
    next(stream)
    stream.close()
    assert threading.active_count() == before
    assert backend.chat(req(max_tokens=3, temperature=0)).generated_tokens == 3  # the lock was released


def test_a_raw_prompt_and_a_continued_message_complete_text(backend):
    resp = backend.chat(ChatRequest(messages=[], prompt="Once upon a time", max_tokens=5, temperature=0))
    assert resp.generated_tokens == 5 and resp.input_tokens == len(backend.tokenizer("Once upon a time")["input_ids"])
    prefilled = ChatRequest(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}],
        continue_final_message=True,
        max_tokens=4,
        temperature=0,
    )
    plain = backend.chat(req("hi", max_tokens=4, temperature=0))
    assert backend.chat(prefilled).input_tokens > plain.input_tokens


def test_unknown_options_and_request_keys_are_named(backend, folder):
    with pytest.raises(UnsupportedParameterError, match="did you mean 'n_threads'") as info:
        create_backend("transformers", str(folder), {"n_thread": 2})
    assert info.value.param == "n_thread"
    with pytest.raises(InvalidRequestError, match="accepted: float32, bfloat16, float16") as info:
        get_backend_class("transformers").check_options({"dtype": "float64"})
    assert info.value.param == "dtype"
    request = req(extra={"top_kk": 5})
    with pytest.raises(UnsupportedParameterError, match="did you mean 'top_k'") as info:
        backend.check_request(request)
    assert info.value.param == "top_kk"
    with pytest.raises(InvalidRequestError) as info:
        list(backend.stream(req(extra={"top_k": "many"})))
    assert info.value.param == "top_k"


def test_model_path_errors_name_the_path(tmp_path):
    with pytest.raises(ModelPathError) as info:
        create_backend("transformers", str(tmp_path / "nothing"), {})
    assert info.value.param == "model_path"
    with pytest.raises(ModelPathError, match="no config.json") as info:
        create_backend("transformers", str(tmp_path), {})
    assert info.value.param == "model_path"
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelPathError, match="neither a Hugging Face model folder nor a .gguf file"):
        create_backend("transformers", str(tmp_path / "weights.bin"), {})


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_device_cuda_without_cuda_is_refused_before_loading(folder):
    with pytest.raises(BackendError, match="no CUDA device"):
        create_backend("transformers", str(folder), {"device": "cuda"})


def test_too_long_prompts_and_json_formats_are_refused(backend, monkeypatch):
    with pytest.raises(InvalidRequestError, match="max_model_len is 512") as info:
        list(backend.stream(req("panda " * 600)))
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequestError, match="max input length 10"):
        list(backend.stream(req("panda " * 20, max_input_tokens=10)))
    with pytest.raises(InvalidRequestError) as info:
        list(backend.stream(req(response_format={"type": "json_object"})))
    assert info.value.param == "response_format"
    monkeypatch.setattr(backend.tokenizer, "chat_template", None)
    with pytest.raises(InvalidRequestError, match="no chat template.*pass a prompt") as info:
        list(backend.stream(req()))
    assert info.value.param == "messages"
    assert backend.chat(ChatRequest(messages=[], prompt="x", max_tokens=2)).generated_tokens == 2


def test_meta_describes_the_model_and_typed_output_is_asked_for_in_the_prompt(backend, folder):
    meta = backend.get_meta()
    assert meta["backend"] == "transformers" and meta["model_path"] == str(folder)
    assert meta["max_model_len"] == 512  # the model's max_position_embeddings caps the default 2048
    assert meta["architectures"] == ["LlamaForCausalLM"] and meta["tasks"] == ["chat"]
    assert meta["support_stream"] is True and meta["support_chat_template"] is True
    assert meta["dtype"] == "float32" and meta["n_threads"] == 1 and meta["device"] == "cpu"
    assert meta["options"]["max_model_len"] == 2048
    assert pick_strategy(meta) == "prompt"
    assert default_backend_for(str(folder)) == "transformers"


def test_the_builtin_gguf_loads_dequantized_and_chats():
    b = create_backend("transformers", "builtin:smollm2", {"n_threads": 1})
    try:
        assert b.model.hf_quantizer is None and not hasattr(b.model.config, "quantization_config")
        meta = b.meta()
        assert meta["max_model_len"] == 2048 and meta["support_chat_template"] is True
        assert meta["model_path"].endswith(".gguf") and meta["architectures"]
        resp = b.chat(req("What is 2 + 2?", max_tokens=6, temperature=0))
        assert resp.text.strip() and resp.input_tokens > 5 and 0 < resp.generated_tokens <= 6
        assert resp.finish_reason in ("stop", "length")
    finally:
        b.close()
