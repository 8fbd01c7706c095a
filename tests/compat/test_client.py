"""The clients behave as Byzer-LLM's do where its users rely on them (../shared/reference/
byzerllm-api-audit.md, sections 2 and 3). Each test cites the real source it follows
(allwefantasy/byzer-llm @ 8d28eee); the model behind them is a recording OpenAI-compatible
upstream on loopback, driven through a real ``saas/openai`` deployment."""

from __future__ import annotations

import inspect

import pytest

import byzerllm
from byzerllm.errors import InvalidRequestError, ModelNotFoundError, UnsupportedParameterError
from byzerllm.utils.client import EventName, LLMClassResponse

from .conftest import deploy


def ask(client, text="hi", **kwargs):
    return client.chat_oai(conversations=[{"role": "user", "content": text}], **kwargs)[0]


# --- constructors -------------------------------------------------------------------------
def test_simple_client_takes_default_model_name_by_keyword_and_position():
    # R-sc:57 SimpleByzerLLM.__init__(self, default_model_name="deepseek_chat")
    assert byzerllm.SimpleByzerLLM(default_model_name="m1").default_model_name == "m1"
    assert byzerllm.SimpleByzerLLM("m2").default_model_name == "m2"
    assert byzerllm.SimpleByzerLLM().default_model_name == "deepseek_chat"
    assert byzerllm.SimpleByzerLLM.from_default_model("m3").default_model_name == "m3"


def test_byzerllm_takes_url_and_its_keyword_options():
    # R-bc:58 ByzerLLM.__init__(self, url=None, **kwargs): verbose, force_skip_context_length_check,
    # default_max_output_length, byzer_engine_url
    llm = byzerllm.ByzerLLM(verbose=True, force_skip_context_length_check=True, default_max_output_length=100)
    assert llm.verbose and llm.force_skip_context_length_check
    assert llm.get_max_output_length("any") == 100
    assert byzerllm.ByzerLLM("http://127.0.0.1:9003/run/script").url == "http://127.0.0.1:9003/run/script"


def test_connect_cluster_takes_the_real_keywords():
    # utils/connect_ray.py:33 connect_cluster(address="auto", java_home=None, code_search_path=None, init_options={})
    params = list(inspect.signature(byzerllm.connect_cluster).parameters)
    assert params[:4] == ["address", "java_home", "code_search_path", "init_options"]
    with pytest.raises(InvalidRequestError, match="init_options must be a dict"):
        byzerllm.connect_cluster(init_options=["not", "a", "dict"])


# --- deploy and llm_config ---------------------------------------------------------------------
def test_saas_deploy_takes_is_reasoning_and_sends_no_sampling_for_reasoning_models(llm, upstream):
    # R-sc:101 is_reasoning read from infer_params; R-sc:468 a reasoning model's request carries no
    # temperature, max_tokens or top_p
    deploy(llm, upstream, "r1", **{"saas.is_reasoning": True})
    ask(llm, model="r1", llm_config={"temperature": 0.3, "max_length": 50})
    assert not {"temperature", "max_tokens", "top_p"} & set(upstream.bodies[-1])
    ask(llm, llm_config={"temperature": 0.3, "max_length": 50})
    assert upstream.bodies[-1]["temperature"] == 0.3 and upstream.bodies[-1]["max_tokens"] == 50
    assert llm.get_meta("r1")["is_reasoning"] is True


def test_llm_config_keys_of_real_callers_are_accepted(llm, upstream):
    # the real client reads what it knows of llm_config and ignores the rest (R-sc:395); auto-coder
    # passes human_as_model (common/code_auto_generate.py) and engine keys such as top_k reach vLLM
    out = ask(llm, llm_config={"human_as_model": True, "gen.top_k": 5, "gen.stop_token_ids": [2]})
    assert out.output == '{"value": true}'
    body = upstream.bodies[-1]
    assert body["top_k"] == 5 and "human_as_model" not in body and "stop_token_ids" not in body


def test_a_typo_in_llm_config_names_the_closest_key(llm):
    with pytest.raises(UnsupportedParameterError, match="'temperatur'.*did you mean 'temperature'"):
        ask(llm, llm_config={"temperatur": 0.5})


def test_a_typo_in_infer_params_names_the_closest_key(llm, upstream):
    with pytest.raises(UnsupportedParameterError, match="'is_reasonin'.*did you mean 'is_reasoning'"):
        deploy(llm, upstream, "typo", **{"saas.is_reasonin": True})


@pytest.mark.parametrize(("mode", "expect"), [("vllm", "body"), ("deepseek", "message"), ("siliconflow", "extra")])
def test_response_prefix_is_sent_as_each_provider_takes_it(llm, upstream, mode, expect):
    # R-sc:249-285 process_messages: response_prefix (llm_config) makes the last assistant message a
    # prefix to continue: DeepSeek's "prefix": true, SiliconFlow's extra_body.prefix; auto-coder's
    # common/utils_code_auto_generate.py:36 sends "gen.response_prefix": True
    deploy(llm, upstream, f"prefix_{mode}", **{"saas.prefix_mode": mode})
    conversation = [{"role": "user", "content": "write"}, {"role": "assistant", "content": "def f("}]
    llm.chat_oai(conversations=conversation, model=f"prefix_{mode}", llm_config={"gen.response_prefix": True})
    body = upstream.bodies[-1]
    if expect == "message":
        assert body["messages"][-1] == {"role": "assistant", "content": "def f(", "prefix": True}
    elif expect == "extra":
        assert body["prefix"] == "def f(" and body["messages"][-1]["role"] == "user"
    else:
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    llm.chat_oai(conversations=conversation, model=f"prefix_{mode}", llm_config={"gen.response_prefix": False})
    assert "prefix" not in upstream.bodies[-1]["messages"][-1] and "continue_final_message" not in upstream.bodies[-1]


# --- reasoning models ----------------------------------------------------------------------
def test_reasoning_content_is_read_without_configuration(llm, upstream):
    # R-sc:505 message.reasoning_content -> metadata["reasoning_content"]; R-sc:631 the stream's
    # delta.reasoning_content -> SingleOutputMeta.reasoning_content (cumulative without delta_mode)
    upstream.reasoning = "let me think"
    out = ask(llm)
    assert out.metadata["reasoning_content"] == "let me think"
    items = list(llm.stream_chat_oai(conversations=[{"role": "user", "content": "hi"}], delta_mode=True))
    assert "".join(meta.reasoning_content for _, meta in items) == "let me think"
    items = list(llm.stream_chat_oai(conversations=[{"role": "user", "content": "hi"}]))
    assert items[-1][1].reasoning_content == "let me think" and items[-1][0] == upstream.text


# --- sub clients, events and limits --------------------------------------------------------
def test_sub_clients_are_kept_by_name():
    # R-sc:200-218 setup_sub_client / get_sub_client / remove_sub_client (a client or a list of them)
    main, code = byzerllm.SimpleByzerLLM("a"), byzerllm.SimpleByzerLLM("b")
    assert main.setup_sub_client("code_model", [code]) is main
    assert main.get_sub_client("code_model") == [code]
    main.setup_sub_client("chat_model", code)
    assert main.get_sub_client("chat_model") is code
    assert main.remove_sub_client("chat_model").get_sub_client("chat_model") is None
    assert main.get_sub_client("never") is None


def test_a_before_call_callback_can_answer_instead_of_the_model(llm, upstream):
    # R-bc:1894 / R-sc:442 BEFORE_CALL_MODEL callback(llm, model, input_value) returning (False, v)
    # answers with v; the shape is auto-coder's human_as_model interceptor (auto_coder.py:487)
    seen = []

    def intercept(client, model, input_value):
        seen.append((client, model, input_value[0]["instruction"], [m["role"] for m in input_value[0]["history"]]))
        if not input_value[0].pop("human_as_model", None):
            return True, None
        return False, [{"predict": "typed by a human", "input": input_value[0]["instruction"], "metadata": {}}]

    llm.add_event_callback(EventName.BEFORE_CALL_MODEL, intercept)
    sent = len(upstream.bodies)
    conversation = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    out = llm.chat_oai(conversations=conversation, llm_config={"human_as_model": True})
    assert out[0].output == "typed by a human" and len(upstream.bodies) == sent
    assert seen[-1] == (llm, "deepseek_chat", "q", ["system"])
    streamed = list(
        llm.stream_chat_oai(conversations=conversation, delta_mode=True, llm_config={"human_as_model": True})
    )
    assert "".join(t for t, _ in streamed) == "typed by a human" and streamed[-1][1].finish_reason == "stop"
    assert ask(llm).output == upstream.text and len(upstream.bodies) == sent + 1  # no human: the model answers


def test_an_after_call_callback_sees_the_result_and_can_replace_it(llm, upstream):
    # R-bc:1930 AFTER_CALL_MODEL callback(llm, model, [{"predict", "metadata", "input"}]); auto-coder's
    # token_counter_interceptor reads metadata input/generated_tokens_count
    counted = []

    def count(client, model, response):
        counted.append(response[0]["metadata"]["generated_tokens_count"])
        return True, None

    llm.add_event_callback(EventName.AFTER_CALL_MODEL, count)
    ask(llm)
    list(llm.stream_chat_oai(conversations=[{"role": "user", "content": "hi"}]))
    assert counted == [1, 2]
    llm.add_event_callback(
        EventName.AFTER_CALL_MODEL, lambda c, m, r: (False, [{"predict": "replaced", "input": "", "metadata": {}}])
    )
    assert ask(llm).output == "replaced"
    with pytest.raises(InvalidRequestError, match="event_name must be an EventName"):
        llm.add_event_callback("before_call_model", count)


def test_max_output_length_caps_and_max_input_length_refuses(llm, upstream):
    # R-bc:290-294 setup_max_input_length / setup_max_output_length; R-bc:1187 the output length
    # becomes the request's max_length
    llm.setup_max_output_length("deepseek_chat", 20)
    ask(llm)
    assert upstream.bodies[-1]["max_tokens"] == 20
    ask(llm, llm_config={"max_length": 500})
    assert upstream.bodies[-1]["max_tokens"] == 20
    ask(llm, llm_config={"max_length": 5})
    assert upstream.bodies[-1]["max_tokens"] == 5
    assert llm.get_max_output_length("deepseek_chat") == 20
    llm.setup_max_input_length("deepseek_chat", 10)
    sent = len(upstream.bodies)
    with pytest.raises(InvalidRequestError, match="over the max input length 10") as info:
        ask(llm, "word " * 100)
    assert info.value.param == "messages" and len(upstream.bodies) == sent
    assert ask(llm, "short").output == upstream.text


def test_only_return_prompt_calls_no_model(llm, upstream):
    # R-bc:1199 only_return_prompt: [LLMResponse(output="", metadata=item, input=item["instruction"])],
    # an LLMClassResponse with reason "Only return prompt" when a response_class is given
    sent = len(upstream.bodies)
    conversation = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    [out] = llm.chat_oai(conversations=conversation, only_return_prompt=True, llm_config={"max_length": 7})
    assert out.output == "" and out.input == "c"
    assert out.metadata["history"] == conversation[:2] and out.metadata["max_length"] == 7
    [typed] = llm.chat_oai(conversations=conversation, only_return_prompt=True, response_class=byzerllm.types.Bool)
    assert isinstance(typed, LLMClassResponse) and typed.metadata["reason"] == "Only return prompt"
    assert len(upstream.bodies) == sent


def test_undeploy_force_ignores_a_missing_deployment(llm):
    # R-sc:66 undeploy(udf_name, force=False) does nothing for a name it does not have
    llm.undeploy("never_deployed", force=True)
    with pytest.raises(ModelNotFoundError):
        llm.undeploy("never_deployed")


def test_emb_and_emb_query_fall_back_to_the_default_model(upstream):
    # R-sc:172 emb uses `model or self.default_model_name`; R-sc:197 emb_query(v, model=None);
    # auto-coder's rag/cache/local_duckdb_storage_cache.py:160 calls emb_query(text) on such a client
    client = byzerllm.SimpleByzerLLM(default_model_name="emb")
    deploy(client, upstream, "emb")
    try:
        [vector] = client.emb_query("hello")
        assert vector.output == [5.0, 1.0]
        assert client.emb(None, byzerllm.LLMRequest(instruction="hi"), extract_params={})[0].output == [2.0, 1.0]
        assert client.emb_query(v="abc")[0].output == [3.0, 1.0]
    finally:
        client.close()


# --- typed output on a provider that refuses json_schema ----------------------------------------
def test_typed_output_falls_back_to_the_prompt_when_json_schema_is_refused(llm, upstream):
    # DeepSeek answers response_format json_schema with 400; auto-coder's with_return_type calls
    # (16) must still get their value
    upstream.refuse_json_schema = True

    @byzerllm.prompt()
    def is_python(code: str) -> str:
        """Is this Python? {{ code }}"""

    value = is_python.with_llm(llm).with_return_type(byzerllm.types.Bool).run("print(1)")
    assert value.value is True
    refused, retried = upstream.bodies[-2:]
    assert refused["response_format"]["type"] == "json_schema"
    assert "response_format" not in retried and "JSON schema" in retried["messages"][-1]["content"]
    assert "json_schema" not in llm.get_meta()["support_response_format"]
    is_python.with_llm(llm).with_return_type(byzerllm.types.Bool).run("x = 1")
    assert "response_format" not in upstream.bodies[-1]  # remembered: asked in the prompt at once
    [answer] = llm.chat_oai(conversations=[{"role": "user", "content": "yes?"}], response_class=byzerllm.types.Bool)
    assert answer.value.value is True


def test_the_deepseek_preset_asks_for_json_in_the_prompt():
    client = byzerllm.SimpleByzerLLM("ds")
    client.deploy(
        model_path="", pretrained_model_type="saas/deepseek", udf_name="ds", infer_params={"saas.api_key": "k"}
    )
    try:
        assert client.get_meta()["support_response_format"] == ["json_object"]
    finally:
        client.close()


def test_a_tagged_image_in_a_user_message_is_sent_as_an_image_part(llm, upstream, tmp_path):
    # R-sc:362 process_image: "<_image_>data:...</_image_>" in a user message becomes an image_url part
    png = tmp_path / "dot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    tagged = byzerllm.Image.load_image_from_path(str(png))
    ask(llm, f"{tagged}What is this?")
    content = upstream.bodies[-1]["messages"][-1]["content"]
    assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1] == {"type": "text", "text": "What is this?"}


def test_chat_with_an_llm_request_as_the_readme_does(llm, upstream):
    # R-bc:1735 chat(model, request: LLMRequest | str, extract_params={}); README 001:
    # llm.chat("llama_chat", LLMRequest(instruction="hello world"))[0].output
    out = llm.chat("deepseek_chat", byzerllm.LLMRequest(instruction="hello world", max_length=20))
    assert out[0].output == upstream.text
    body = upstream.bodies[-1]
    assert body["messages"] == [{"role": "user", "content": "hello world"}] and body["max_tokens"] == 20
    two = llm.chat(None, byzerllm.LLMRequest(instruction=["a", "b"]), extract_params={"gen.top_k": 3})
    assert len(two) == 2 and upstream.bodies[-1]["top_k"] == 3
    assert llm.raw_chat(None, "plain")[0].output == upstream.text


def test_a_verbose_client_logs_what_it_sends(upstream, caplog):
    # R-bc:1913 a verbose client prints "Send to model[...]" with the request
    client = byzerllm.SimpleByzerLLM("v", verbose=True)
    deploy(client, upstream, "v")
    try:
        with caplog.at_level("INFO", logger="byzerllm.client"):
            ask(client, "logged question")
        assert "Send to model[v]" in caplog.text and "logged question" in caplog.text
    finally:
        client.close()
