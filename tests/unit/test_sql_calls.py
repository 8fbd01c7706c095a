"""The SQL functions' row semantics (byzerllm.sql.calls) and the schema -> column type mapping."""

from __future__ import annotations

import json

import pydantic
import pytest

from byzerllm.errors import InvalidRequestError
from byzerllm.sql.calls import chat_arguments, llm_error, llm_param, llm_prompt, llm_result, llm_stack
from byzerllm.sql.schema import conform, duckdb_type, spark_type, struct_of


def test_llm_param_keeps_the_map_and_null_is_null():
    assert json.loads(llm_param({"instruction": "hi", "max_length": "8"})) == {"instruction": "hi", "max_length": "8"}
    assert json.loads(llm_param([("instruction", "hi")])) == {"instruction": "hi"}
    assert llm_param(None) is None


def test_llm_prompt_fills_numbered_placeholders_only():
    assert llm_prompt('Remember {0}, not {1}; JSON {"a": 1}', ["Zhu William", 2]) == (
        'Remember Zhu William, not 2; JSON {"a": 1}'
    )
    with pytest.raises(ValueError, match=r"uses \{1\} but only 1 values"):
        llm_prompt("{0} {1}", ["a"])


def test_a_stacked_request_carries_the_earlier_turns_and_roles():
    first = {"instruction": "I am William", "system_msg": "be brief", "user_role": "User"}
    response = json.dumps({"output": "Hello William", "input": first, "metadata": {}})
    second = json.loads(llm_stack(response, llm_param({"instruction": "Who am I?"})))
    assert second["history"] == [
        {"role": "user", "content": "I am William"},
        {"role": "assistant", "content": "Hello William"},
    ]
    assert second["system_msg"] == "be brief" and second["user_role"] == "User"
    args = chat_arguments(second)
    assert [m["role"] for m in args["conversations"]] == ["system", "user", "assistant", "user"]
    assert args["role_mapping"] == {"user_role": "User"} and args["llm_config"] == {}


def test_a_failed_row_has_no_result_an_error_and_fails_its_follow_up():
    failed = json.dumps({"error": {"type": "QueueFullError", "message": "busy"}, "input": {"instruction": "x"}})
    assert llm_result(failed) is None and llm_error(failed) == "QueueFullError: busy"
    ok = json.dumps({"output": "fine", "input": {"instruction": "x"}, "metadata": {}})
    assert llm_result(ok) == "fine" and llm_error(ok) is None
    follow_up = json.loads(llm_stack(failed, llm_param({"instruction": "next"})))
    with pytest.raises(InvalidRequestError, match="QueueFullError: busy"):
        chat_arguments(follow_up)


@pytest.mark.parametrize(
    "request_,param",
    [
        ({"max_length": "8"}, "instruction"),
        ({"instruction": ""}, "instruction"),
        ({"instruction": "a", "history": "x"}, "history"),
    ],
)
def test_bad_requests_name_their_key(request_, param):
    with pytest.raises(InvalidRequestError) as info:
        chat_arguments(request_)
    assert info.value.param == param


def test_a_response_that_is_not_one_is_refused_by_name():
    with pytest.raises(InvalidRequestError, match="must be the JSON object that a model function returns"):
        llm_result("plain text")


class Address(pydantic.BaseModel):
    city: str


class Person(pydantic.BaseModel):
    name: str
    age: int
    score: float
    tags: list[str]
    address: Address
    extra: dict[str, int] | None = None


def test_a_schema_becomes_a_struct_on_each_engine():
    kind = struct_of(Person)
    assert duckdb_type(kind) == (
        'STRUCT("name" VARCHAR, "age" BIGINT, "score" DOUBLE, "tags" VARCHAR[], "address" STRUCT("city" VARCHAR), '
        '"extra" VARCHAR)'
    )
    assert spark_type(kind) == (
        "struct<`name`:string,`age`:bigint,`score`:double,`tags`:array<string>,`address`:struct<`city`:string>,"
        "`extra`:string>"
    )
    value = {"name": "n", "age": 1, "score": 0.5, "tags": ["a"], "address": {"city": "c"}, "extra": {"k": 1}}
    assert conform(value, kind)["extra"] == '{"k": 1}'
    assert conform({"name": "n"}, kind)["address"] is None
    with pytest.raises(InvalidRequestError, match="object with properties"):
        struct_of({"type": "string"})
