"""Tools, typed responses, the tool-call stream parser, the sandbox and the impl cache."""

import datetime
import json

import pydantic
import pytest

import byzerllm
from byzerllm.client.structured import ImplError, _CallStreamParser
from byzerllm.errors import InvalidRequestError, OutputParseError
from byzerllm.structured.layers import class_plan, tool_call_plan
from byzerllm.structured.plan import run_plan
from byzerllm.structured.sandbox import run_function
from byzerllm.structured.tools import call_schema, choose, execute, parse_call, to_tools
from byzerllm.types import LLMResponse

from ..doc_tools import Time, compute_date_range, compute_now


def explode(x: int) -> int:
    """Always fails."""
    raise ValueError(f"bad {x}")


class Answers:
    """A scripted client: answers in order, records the calls."""

    def __init__(self, *texts: str | tuple[str, str]):
        self.texts, self.calls = list(texts), []

    def chat_oai(self, conversations, model=None, llm_config=None, extra_request_params=None):
        self.calls.append({"messages": conversations, "llm_config": llm_config, "extra": extra_request_params})
        answer = self.texts.pop(0)
        text, finish = answer if isinstance(answer, tuple) else (answer, "stop")
        return [
            LLMResponse(
                text,
                {},
                {"finish_reason": finish, "input_tokens_count": 1, "generated_tokens_count": 1, "time_cost": 0.1},
            )
        ]


def test_tool_schema_from_a_callable():
    [tool] = to_tools([compute_date_range])
    assert tool.name == "compute_date_range" and tool.description.startswith("计算日期范围")
    props = tool.parameters["properties"]
    assert props["count"] == {"type": "integer", "description": "时间跨度，数值类型"}
    assert props["unit"]["enum"] == ["day", "week", "month", "year"]
    assert tool.parameters["required"] == ["count", "unit"]
    assert tool.openai()["function"]["name"] == "compute_date_range"


def test_openai_schema_tools_and_bad_tools():
    spec = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "d",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    [tool] = to_tools([spec])
    assert tool.validate({"q": "x"}) == {"q": "x"}
    with pytest.raises(OutputParseError, match="'q' is a required property"):
        tool.validate({})
    with pytest.raises(InvalidRequestError, match="unique"):
        to_tools([compute_now, compute_now])
    with pytest.raises(InvalidRequestError, match="not among the tools"):
        choose(to_tools([compute_now]), "nope")
    assert [t.name for t in choose(to_tools([compute_now, explode]), {"function": {"name": "explode"}})] == ["explode"]


def test_parse_call_validates_and_coerces():
    tools = to_tools([compute_date_range, compute_now])
    call = parse_call(tools, {"name": "compute_date_range", "arguments": {"count": "3", "unit": "month"}})
    assert call.arguments == {"count": 3, "unit": "month"}
    with pytest.raises(OutputParseError, match="does not exist"):
        parse_call(tools, {"name": "other", "arguments": {}})
    with pytest.raises(OutputParseError, match="count"):
        parse_call(tools, {"name": "compute_date_range", "arguments": {"unit": "day"}})


def test_call_schema_has_one_branch_per_tool():
    schema = call_schema(to_tools([compute_date_range, compute_now]))
    assert [b["properties"]["name"]["const"] for b in schema["anyOf"]] == ["compute_date_range", "compute_now"]


def test_a_raising_tool_is_an_answer_with_its_traceback():
    tools = to_tools([explode])
    value, reason = execute(tools, parse_call(tools, {"name": "explode", "arguments": {"x": 2}}))
    assert value is None and reason.startswith("explode raised ValueError: bad 2") and "raise ValueError" in reason


def test_tool_plan_prompt_strategy_repairs_once_then_reports():
    tools = to_tools([compute_date_range, compute_now])
    llm = Answers(
        'I will call {"name": "compute_date_range", "arguments": {"count": 3}}',
        '{"name": "compute_date_range", "arguments": {"count": 3, "unit": "month"}}',
    )
    call, _, reason = run_plan(
        tool_call_plan([{"role": "user", "content": "最近三个月趋势"}], tools, "prompt", {}), llm, "m"
    )
    assert reason == "" and call.arguments == {"count": 3, "unit": "month"}
    assert llm.calls[0]["messages"][0]["role"] == "system" and "compute_now" in llm.calls[0]["messages"][0]["content"]
    assert "unit" in llm.calls[1]["messages"][-1]["content"]
    failing = Answers("no", "still no")
    call, _, reason = run_plan(tool_call_plan([{"role": "user", "content": "x"}], tools, "prompt", {}), failing, "m")
    assert call is None and "no JSON value" in reason


def test_tool_plan_constrained_strategy_sends_the_call_schema():
    tools = to_tools([compute_now])
    llm = Answers('{"name": "compute_now", "arguments": {}}')
    call, _, _ = run_plan(tool_call_plan([{"role": "user", "content": "x"}], tools, "constrained", {}), llm, "m")
    assert call.name == "compute_now"
    assert llm.calls[0]["extra"]["response_format"]["json_schema"]["schema"] == call_schema(tools)


class Story(pydantic.BaseModel):
    title: str
    body: str


def test_class_plan_with_and_without_chat_first():
    llm = Answers('{"title": "t", "body": "b"}')
    value, _, reason = run_plan(
        class_plan([{"role": "user", "content": "story"}], Story, False, "constrained", {}), llm, "m"
    )
    assert value == Story(title="t", body="b") and reason == ""
    llm = Answers("Once there was a fox.", '{"title": "Fox", "body": "Once there was a fox."}')
    value, _, _ = run_plan(class_plan([{"role": "user", "content": "story"}], Story, True, "prompt", {}), llm, "m")
    assert value.title == "Fox" and "Once there was a fox." in llm.calls[1]["messages"][-1]["content"]
    schema = json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    value, _, reason = run_plan(
        class_plan([{"role": "user", "content": "n"}], schema, False, "prompt", {}),
        Answers('{"n": "x"}', '{"n": 4}'),
        "m",
    )
    assert value == {"n": 4} and reason == ""
    with pytest.raises(InvalidRequestError, match="JSON schema"):
        next(class_plan([], "not json", False, "prompt", {}))


def test_constrained_json_cut_off_in_a_loop_is_sampled_again_not_shown_to_the_model():
    ask = [{"role": "user", "content": "story"}]
    llm = Answers(('{"title": "la la la la la la', "length"), '{"title": "t", "body": "b"}')
    value, _, reason = run_plan(class_plan(ask, Story, False, "constrained", {"seed": 4}), llm, "m")
    assert value == Story(title="t", body="b") and reason == ""
    assert llm.calls[1]["messages"] == llm.calls[0]["messages"] and llm.calls[1]["llm_config"]["seed"] == 5
    llm = Answers(('{"title": "la la', "length"), ('{"title": "la la', "length"))
    value, _, reason = run_plan(class_plan(ask, Story, False, "constrained", {}), llm, "m")
    assert value is None and "cut off by max_length" in reason and "seed" not in llm.calls[1]["llm_config"]


def test_call_stream_parser_emits_name_once_then_argument_pieces():
    parser = _CallStreamParser()
    text = '{"name": "compute_date_range", "arguments": {"count": 3, "unit": {"x": "}"}}}'
    deltas = []
    for i in range(0, len(text), 3):
        deltas += parser.feed(text[i : i + 3])
    deltas += parser.close()
    assert deltas[0]["function"]["name"] == "compute_date_range" and deltas[0]["id"].startswith("call_")
    assert all("name" not in d["function"] for d in deltas[1:])
    args = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(args) == {"count": 3, "unit": {"x": "}"}}


def test_sandbox_runs_code_and_stops_what_it_must(tmp_path):
    ok = "def f(n):\n    return Out(day=(datetime.date(2024, 1, 1) + datetime.timedelta(days=n)).isoformat())"
    assert run_function(ok, "f", {"n": 1}, ["Out"]) == ({"day": "2024-01-02"}, "")
    _, reason = run_function(f"def f():\n    open({str(tmp_path / 'x')!r}, 'w')", "f", {})
    assert "only the sandbox folder is writable" in reason and not (tmp_path / "x").exists()
    assert run_function("def f():\n    open('x', 'w').write('1')\n    return open('x').read()", "f", {}) == ("1", "")
    assert (
        "not allowed in the sandbox"
        in run_function("import socket\ndef f():\n    socket.create_connection(('127.0.0.1', 9))", "f", {})[1]
    )
    spawn = "import subprocess\ndef f():\n    subprocess.run(['true'])"
    assert "subprocess.Popen is not allowed" in run_function(spawn, "f", {})[1]
    assert "sandbox timeout" in run_function("def f():\n    while True:\n        pass", "f", {}, timeout=1)[1]
    assert "MemoryError" in run_function("def f():\n    return len(bytearray(2**31))", "f", {}, memory_mb=256)[1]
    assert "SyntaxError" in run_function("def f(:", "f", {})[1]


GOOD = '    return Time(time=datetime.date.today().strftime("%Y-%m-%d"))'


class ScriptedByzerLLM(byzerllm.ByzerLLM):
    """The real impl path with the model call replaced by scripted answers."""

    def __init__(self, *answers):
        super().__init__(default_model="m")
        self.answers, self.requests = list(answers), 0

    def chat_oai(self, conversations, model=None, llm_config=None, extra_request_params=None, **_):
        self.requests += 1
        return [LLMResponse(self.answers.pop(0), {}, {"finish_reason": "stop"})]


def declare(llm):
    @llm.impl()
    def calculate_current_time() -> Time:
        """
        计算当前时间
        """

    return calculate_current_time


def test_impl_generates_validates_caches_and_clears(tmp_path, monkeypatch):
    monkeypatch.setenv("BYZERLLM_CACHE_DIR", str(tmp_path))
    llm = ScriptedByzerLLM("    return Time(when=1)", GOOD)
    assert declare(llm)() == Time(time=datetime.date.today().strftime("%Y-%m-%d"))
    assert llm.requests == 2  # the first answer failed validation and was fixed on the re-ask
    again = ScriptedByzerLLM()  # a new client (as after a restart) is served from the disk cache
    fn = declare(again)
    assert fn().time and again.requests == 0
    assert list(tmp_path.glob("impl/calculate_current_time-*.py"))
    assert again.clear_impl_cache(fn) == 1
    broken = ScriptedByzerLLM("    return 1/0", "    return 1/0")
    with pytest.raises(ImplError, match="ZeroDivisionError"):
        declare(broken)()
    assert not list(tmp_path.glob("impl/*.py"))  # failures are not cached


def test_nested_models_are_inlined_into_tool_schemas():
    class Passenger(pydantic.BaseModel):
        name: str
        age: int

    def book(passengers: list[Passenger]) -> str:
        """Book seats."""
        return "ok"

    [tool] = to_tools([book])
    assert "$defs" not in json.dumps(tool.parameters)
    assert tool.parameters["properties"]["passengers"]["items"]["properties"]["age"]["type"] == "integer"
    call = parse_call([tool], {"name": "book", "arguments": {"passengers": [{"name": "Ann", "age": "30"}]}})
    assert call.arguments == {"passengers": [{"name": "Ann", "age": 30}]}
