"""The documents' tool, response_class and impl examples on the built-in model deployed on Ray."""

import json

import pytest

import byzerllm
from byzerllm.client.structured import ImplError
from byzerllm.types import LLMClassResponse, LLMFunctionCallResponse

from ..doc_tools import Story, Time, TimeRange, compute_date_range, compute_now

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(smollm2_chat):
    return byzerllm.ByzerLLM.from_default_model(smollm2_chat)


@pytest.mark.parametrize("query", ["计算当前时间", "最近三个月趋势"])
def test_tools_are_called_and_executed(client, query):
    [t] = client.chat_oai(
        [{"content": query, "role": "user"}], tools=[compute_date_range, compute_now], execute_tool=True
    )
    assert isinstance(t, LLMFunctionCallResponse)
    assert t.metadata["strategy"] == "constrained"
    # the grammar admits only calls of existing tools with valid arguments, so the call runs
    assert t.metadata["reason"] == ""
    [name] = t.metadata["selected_functions"]
    assert name in ("compute_date_range", "compute_now")
    [value] = t.values
    assert isinstance(value, str) if name == "compute_now" else len(value) == 2
    [call] = t.metadata["tool_calls"]
    assert call["name"] == name and json.loads(t.response.output)["name"] == name


def test_tool_calls_without_execution_and_with_a_forced_tool(client):
    [t] = client.chat_oai(
        [{"content": "最近三个月趋势", "role": "user"}],
        tools=[compute_date_range, compute_now],
        tool_choice="compute_date_range",
    )
    assert t.values == []
    [call] = t.metadata["tool_calls"]
    assert call["name"] == "compute_date_range"
    assert isinstance(call["arguments"]["count"], int) and call["arguments"]["unit"] in ("day", "week", "month", "year")


def test_prompt_strategy_says_why_when_no_call_came_out(client, smollm2_chat):
    # seeded: without a grammar the 135M model answers in prose (no JSON call), which the layer reports
    client = byzerllm.ByzerLLM.from_default_model(smollm2_chat).setup_structured_strategy(smollm2_chat, "prompt")
    [t] = client.chat_oai(
        [{"content": "计算当前时间", "role": "user"}],
        tools=[compute_date_range, compute_now],
        execute_tool=True,
        llm_config={"max_length": 120, "seed": 0},
    )
    assert t.metadata["strategy"] == "prompt"
    assert t.values == [] and t.metadata["selected_functions"] == []
    assert "no JSON value found" in t.metadata["reason"]


def test_streamed_tool_call_deltas(client):
    items = list(
        client.stream_chat_oai([{"content": "最近三个月趋势", "role": "user"}], tools=[compute_date_range, compute_now])
    )
    deltas = [d for _, meta in items for d in (meta.tool_calls or [])]
    assert "name" in deltas[0]["function"] and deltas[0]["id"].startswith("call_")
    assert all("name" not in d["function"] for d in deltas[1:])
    arguments = json.loads("".join(d["function"]["arguments"] for d in deltas))
    assert isinstance(arguments, dict)
    assert items[-1][1].finish_reason == "tool_calls"
    assert all(meta.finish_reason is None for _, meta in items[:-1])


@pytest.mark.parametrize("after_chat", [False, True])
def test_response_class_story(client, after_chat):
    [t] = client.chat_oai(
        [{"content": "请给我讲个故事，分成两个部分，一个标题，一个故事主体", "role": "user"}],
        response_class=Story,
        response_after_chat=after_chat,
        # seeded: unseeded, a story's JSON string ran past max_length twice in a row about once in 400
        llm_config={"max_length": 300, "seed": 7},
    )
    assert isinstance(t, LLMClassResponse)
    assert isinstance(t.value, Story) and t.metadata["reason"] == ""
    first = 2 if after_chat else 1  # the prose answer, then the JSON (and perhaps one re-ask)
    assert t.metadata["requests"] in (first, first + 1)


def test_response_class_as_a_json_schema_string(client):
    schema = json.dumps(
        {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "population": {"type": "integer"}},
            "required": ["city", "population"],
        }
    )
    [t] = client.chat_oai(
        [{"content": "Name a big city and its population.", "role": "user"}],
        response_class=schema,
        llm_config={"max_length": 100},
    )
    assert set(t.value) == {"city", "population"} and isinstance(t.value["population"], int)


def test_impl_examples_say_why_the_code_failed_and_cache_nothing(client, tmp_path, monkeypatch):
    """SmolLM2-135M rarely writes working code (seeded here: it never does): each call raises
    ImplError with the sandbox's reason and no code is cached. Code that worked being cached and
    served is tested with scripted answers in tests/unit/test_structured.py."""
    monkeypatch.setenv("BYZERLLM_CACHE_DIR", str(tmp_path))

    @client.impl(llm_config={"seed": 0})
    def calculate_current_time() -> Time:
        """
        计算当前时间
        """

    @client.impl(llm_config={"seed": 0})
    def add_one_day(current_day: str) -> Time:
        """
        给传入的日期加一天，得到明天的时间
        """

    @client.impl(llm_config={"seed": 0})
    def calculate_time_range() -> TimeRange:
        """
        计算时间范围，时间格式为 yyyy-MM-dd. 返回的是一个包含开始时间和截止时间的字典
        """

    for fn, args in (
        (calculate_current_time, ()),
        (add_one_day, ("2024-10-11",)),
        (calculate_time_range, ()),
    ):
        with pytest.raises(ImplError) as info:
            fn(*args)
        assert info.value.reason and not list(tmp_path.glob(f"impl/{fn.__name__}-*.py"))


def test_chat_oai_impl_func_reports_in_metadata(client, tmp_path, monkeypatch):
    monkeypatch.setenv("BYZERLLM_CACHE_DIR", str(tmp_path))

    def calculate_current_time() -> Time:
        """
        计算当前时间
        """

    [t] = client.chat_oai(
        [{"role": "user", "content": "now"}],
        impl_func=calculate_current_time,
        execute_impl_func=True,
        llm_config={"seed": 0},
    )
    assert isinstance(t, LLMFunctionCallResponse)
    assert t.metadata["code"].startswith("def calculate_current_time() -> Time:")
    # seeded: the model's code does not run (as above); the reason says so and nothing is returned
    assert t.values == [] and t.metadata["reason"]
