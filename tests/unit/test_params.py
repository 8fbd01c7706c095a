import pytest

from byzerllm.errors import InvalidRequestError
from byzerllm.params import (
    build_chat_request,
    normalize_infer_params,
    parse_key_values,
    validate_messages,
)

MSG = [{"role": "user", "content": "hi"}]


def test_legacy_keys_map_to_typed_fields():
    req = build_chat_request(
        MSG,
        {"max_length": 10, "gen.temperature": 0.2, "generation.top_p": 0.5, "stop": "###", "seed": "7", "gen.top_k": 3},
    )
    assert (req.max_tokens, req.temperature, req.top_p, req.stop, req.seed) == (10, 0.2, 0.5, ["###"], 7)
    assert req.extra == {"top_k": 3}


def test_later_configs_win_and_client_only_keys_are_dropped():
    req = build_chat_request(MSG, {"max_length": 10}, None, {"max_tokens": 20, "gen.incremental_output": False})
    assert req.max_tokens == 20 and req.extra == {}


@pytest.mark.parametrize(
    "config,param",
    [
        ({"max_length": 0}, "max_length"),
        ({"max_length": 1.5}, "max_length"),
        ({"temperature": 3}, "temperature"),
        ({"gen.top_p": "x"}, "gen.top_p"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"seed": True}, "seed"),
    ],
)
def test_bad_values_name_the_field(config, param):
    with pytest.raises(InvalidRequestError) as info:
        build_chat_request(MSG, config)
    assert info.value.param == param
    assert param in str(info.value)


@pytest.mark.parametrize(
    "messages,param",
    [
        ([], "conversations"),
        ("hello", "conversations"),
        ([{"role": "bot", "content": "x"}], "conversations[0].role"),
        ([{"role": "user"}], "conversations[0].content"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": 3}], "conversations[1].content"),
        ([{"role": "user", "content": "secret \ud800 prompt"}], "conversations[0].content"),
        ([{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}], "conversations[0].content[0].text"),
    ],
)
def test_bad_messages_name_the_message(messages, param):
    with pytest.raises(InvalidRequestError) as info:
        validate_messages(messages)
    assert info.value.param == param


def test_role_error_lists_accepted_roles():
    with pytest.raises(InvalidRequestError, match="accepted roles: system, user, assistant, tool"):
        validate_messages([{"role": "bot", "content": "x"}])


def test_key_values_are_kept_as_text_for_the_backend_to_type():
    assert parse_key_values(["a=1", "saas.base_url=http://x/v1", "b=x=y"]) == {
        "a": "1",
        "saas.base_url": "http://x/v1",
        "b": "x=y",
    }
    with pytest.raises(InvalidRequestError, match="key=value"):
        parse_key_values(["novalue"])
    with pytest.raises(InvalidRequestError, match="empty key"):
        parse_key_values(["=1"])


def test_infer_param_prefixes_are_stripped_once():
    assert normalize_infer_params({"backend.max_model_len": 2048, "n_threads": 1}) == {
        "max_model_len": 2048,
        "n_threads": 1,
    }
    with pytest.raises(InvalidRequestError, match="twice"):
        normalize_infer_params({"backend.n_ctx": 1, "n_ctx": 2})


def test_byzer_json_message_form_becomes_content_parts():
    import json

    content = json.dumps([{"image": "data:image/png;base64,AAAA", "text": "what is this?"}])
    [msg] = validate_messages([{"role": "user", "content": content}])
    assert msg["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "what is this?"},
    ]
    plain = json.dumps([{"text": "just json"}])
    assert validate_messages([{"role": "user", "content": plain}])[0]["content"] == plain


def test_response_format_and_prefill_are_typed():
    req = build_chat_request(MSG, {"response_format": {"type": "json_object"}, "continue_final_message": True})
    assert req.response_format == {"type": "json_object"} and req.continue_final_message
    with pytest.raises(InvalidRequestError, match="response_format"):
        build_chat_request(MSG, {"response_format": "json"})


def test_a_lone_surrogate_is_named_by_position_not_by_text():
    with pytest.raises(InvalidRequestError, match=r"lone surrogate U\+D800 at character 7") as info:
        validate_messages([{"role": "user", "content": "secret \ud800 prompt"}])
    assert "secret" not in str(info.value)
