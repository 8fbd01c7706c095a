"""Prompt functions against a scripted client (the narrow boundary: chat_oai and friends)."""

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Generator, Iterator

import pydantic
import pytest

import byzerllm
from byzerllm.errors import InvalidRequestError, OutputParseError
from byzerllm.multimodal import legacy_parts
from byzerllm.prompt import AsyncPromptFunction, PromptFunction
from byzerllm.structured.layers import class_plan
from byzerllm.structured.plan import run_plan
from byzerllm.structured.repair import REASK
from byzerllm.types import ImagePath, LLMResponse, SingleOutputMeta


class ScriptedLLM:
    """Answers with the given texts in order and records every request."""

    def __init__(self, *answers: str | tuple[str, str], meta: dict | None = None):
        self.answers = list(answers)
        self.calls: list[dict] = []
        self.default_model_name = "scripted"
        self.meta = meta if meta is not None else {"support_response_format": []}

    def _next(self, conversations, model, llm_config, extra_request_params):
        self.calls.append(
            {"messages": conversations, "model": model, "llm_config": llm_config, "extra": extra_request_params}
        )
        answer = self.answers.pop(0)
        text, finish = answer if isinstance(answer, tuple) else (answer, "stop")
        return LLMResponse(
            text,
            {},
            {
                "input_tokens_count": 10,
                "generated_tokens_count": len(text),
                "time_cost": 0.5,
                "first_token_time": 0.1,
                "finish_reason": finish,
            },
        )

    def chat_oai(self, conversations, model=None, llm_config=None, extra_request_params=None):
        return [self._next(conversations, model, llm_config, extra_request_params)]

    async def async_chat_oai(self, conversations, model=None, llm_config=None, extra_request_params=None):
        return [self._next(conversations, model, llm_config, extra_request_params)]

    def stream_chat_oai(self, conversations, model=None, llm_config=None, extra_request_params=None, delta_mode=True):
        resp = self._next(conversations, model, llm_config, extra_request_params)
        for word in resp.output.split(" "):
            yield word + " ", SingleOutputMeta(generated_tokens_count=1)
        yield "", SingleOutputMeta(generated_tokens_count=len(resp.output.split()), finish_reason="stop")

    async def async_stream_chat_oai(
        self, conversations, model=None, llm_config=None, extra_request_params=None, delta_mode=True
    ):
        for item in self.stream_chat_oai(conversations, model, llm_config, extra_request_params, delta_mode):
            yield item

    def get_meta(self, model=None):
        return self.meta


class Story(pydantic.BaseModel):
    """故事"""

    title: str = pydantic.Field(description="故事的标题")
    body: str = pydantic.Field(description="故事主体")


def last_user(call: dict) -> str:
    return next(m["content"] for m in reversed(call["messages"]) if m["role"] == "user")


def test_render_and_keep_the_function_face():
    @byzerllm.prompt()
    def hello(q: str, times: int = 1) -> str:
        """
        你好, {{ q }} ({{ times }})
        """

    assert hello.prompt("你是谁") == "你好, 你是谁 (1)"
    assert str(inspect.signature(hello)) == "(q: str, times: int = 1) -> str"
    assert hello.__name__ == "hello" and "{{ q }}" in hello.__doc__
    import pydoc

    assert "hello(q: str, times: int = 1) -> str" in pydoc.plain(pydoc.render_doc(hello))


def test_call_run_and_with_llm_are_the_same_call():
    llm = ScriptedLLM("a", "b")

    @byzerllm.prompt(llm=llm)
    def hello(q: str) -> str:
        """hi {{ q }}"""

    assert hello("x") == "a"
    assert hello.with_llm(ScriptedLLM("c")).run("y") == "c"
    assert hello.run("z") == "b"
    assert [last_user(c) for c in llm.calls] == ["hi x", "hi z"]


def test_body_dict_adds_variables_and_other_returns_are_refused():
    @byzerllm.prompt()
    def tasks(name, tasks) -> str:
        """{{ name }}: {{ tasks }}"""
        return {"tasks": ", ".join(t["name"] for t in tasks)}

    assert tasks.prompt("Jane", [{"name": "a"}, {"name": "b"}]) == "Jane: a, b"

    @byzerllm.prompt()
    def bad() -> str:
        """x"""
        return "not a dict"

    with pytest.raises(InvalidRequestError, match="returned str; a body returns a dict"):
        bad.prompt()


def test_unknown_template_variable_renders_empty_unless_strict_and_missing_llm_is_named():
    @byzerllm.prompt()
    def lenient(a) -> str:
        """{{ a }} {{ b }}."""

    @byzerllm.prompt(strict=True)
    def f(a) -> str:
        """{{ a }} {{ b }}"""

    assert lenient.prompt(1) == "1 ."
    with pytest.raises(InvalidRequestError, match="template variable.*b.*neither arguments nor keys"):
        f.prompt(1)
    with pytest.raises(InvalidRequestError, match=r"has no llm: pass @byzerllm.prompt\(llm=\.\.\.\)"):
        _no_llm()


def _no_llm():
    @byzerllm.prompt()
    def g(a) -> str:
        """{{ a }}"""

    g.run(1)


def test_methods_classmethods_staticmethods_and_llm_callables():
    class RAG:
        def __init__(self, llm):
            self.llm = llm

        @byzerllm.prompt(lambda self: self.llm)
        def answer(self, name: str) -> str:
            """Hello {{ name }}"""

        @classmethod
        @byzerllm.prompt()
        def cls_prompt(cls, x: int) -> str:
            """c{{ x }}"""

        @staticmethod
        @byzerllm.prompt()
        def static_prompt(x: int) -> str:
            """s{{ x }}"""

        @byzerllm.prompt()
        @classmethod
        def cls_prompt2(cls, x: int) -> str:
            """d{{ x }}"""

    llm = ScriptedLLM("ok", "ok2")
    rag = RAG(llm)
    assert rag.answer("Jane") == "ok"
    assert last_user(llm.calls[0]) == "Hello Jane"
    assert rag.answer.with_llm(ScriptedLLM("other")).run(name="J") == "other"
    assert RAG.cls_prompt.prompt(1) == "c1" and rag.cls_prompt.prompt(2) == "c2"
    assert RAG.static_prompt.prompt(3) == "s3" and rag.static_prompt.prompt(4) == "s4"
    assert RAG.cls_prompt2.prompt(5) == "d5"
    assert str(inspect.signature(RAG.answer)) == "(self, name: str) -> str"


def test_options_stop_suffix_conversation_and_meta():
    llm = ScriptedLLM("x")
    holder: dict = {}

    @byzerllm.prompt(llm=llm)
    def f() -> str:
        """go"""

    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    (
        f.options({"llm_config": {"max_length": 5}, "model": "m2"})
        .with_stop_suffix_list(["END"])
        .with_conversation(history)
        .with_meta(holder)
        .run()
    )
    call = llm.calls[0]
    assert call["model"] == "m2" and call["llm_config"] == {"max_length": 5, "stop": ["END"]}
    assert call["messages"][:2] == history and call["messages"][2]["content"] == "go"
    assert holder == {
        "input_tokens_count": 10,
        "generated_tokens_count": 1,
        "time_cost": 0.5,
        "first_token_time": 0.1,
        "turns": 1,
        "finish_reason": "stop",
        "reasoning_content": "",
    }
    with pytest.raises(InvalidRequestError, match="accepted: llm_config, model"):
        f.options({"temperature": 1})


def test_return_prefix_prefills_the_assistant_turn():
    llm = ScriptedLLM(' "b": 1}')

    @byzerllm.prompt(llm=llm)
    def f() -> str:
        """json please"""

    assert f.with_return_prefix('{"a": 0,').run() == '{"a": 0, "b": 1}'
    assert llm.calls[0]["messages"][-1] == {"role": "assistant", "content": '{"a": 0,'}
    assert llm.calls[0]["extra"]["continue_final_message"] is True


def test_response_markers_continue_until_the_end_and_join_exactly():
    llm = ScriptedLLM(("Once upon", "length"), (" a time there", "length"), (" was a fox.", "stop"))
    holder: dict = {}

    @byzerllm.prompt()
    def tell_story() -> str:
        """讲一个100字的故事。"""

    s = (
        tell_story.with_llm(llm)
        .with_response_markers()
        .with_meta(holder)
        .options({"llm_config": {"max_length": 10}})
        .run()
    )
    assert s == "Once upon a time there was a fox."
    assert holder["turns"] == 3
    prefills = [c["messages"][-1]["content"] for c in llm.calls]
    assert prefills == ["<RESPONSE>", "<RESPONSE>Once upon", "<RESPONSE>Once upon a time there"]
    assert all(c["llm_config"]["stop"] == ["</RESPONSE>"] for c in llm.calls)
    assert "</RESPONSE>" in last_user(llm.calls[0])
    bounded = ScriptedLLM(*[("x", "length")] * 5)
    assert tell_story.with_llm(bounded).with_response_markers().with_max_turns(3).run() == "xxx"
    assert len(bounded.calls) == 3


def test_typed_result_with_constrained_backend_uses_response_format():
    llm = ScriptedLLM('{"title": "T", "body": "B"}', meta={"support_response_format": ["json_schema"]})

    @byzerllm.prompt(llm=llm)
    def tell_story() -> Story:
        """讲一个100字的故事。"""

    s = tell_story()
    assert isinstance(s, Story) and s.title == "T"
    rf = llm.calls[0]["extra"]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"]["required"] == ["title", "body"]
    assert last_user(llm.calls[0]) == "讲一个100字的故事。"


def test_typed_result_without_constrained_backend_repairs_once():
    llm = ScriptedLLM('Sure! {"title": "T"}', 'Here: ```json\n{"title": "T", "body": "B"}\n```')

    @byzerllm.prompt(llm=llm)
    def tell_story() -> Story:
        """讲一个故事。"""

    assert tell_story() == Story(title="T", body="B")
    assert "JSON schema" in last_user(llm.calls[0])
    assert "body" in last_user(llm.calls[1]) and "Field required" in last_user(llm.calls[1])
    failing = ScriptedLLM("no json", "still none")
    with pytest.raises(OutputParseError, match="no JSON value"):
        tell_story.with_llm(failing).run()


def test_dict_list_and_return_type_override():
    llm = ScriptedLLM('{"a": 1}', "[1, 2]", '{"title": "t", "body": "b"}')

    @byzerllm.prompt(llm=llm)
    def as_dict() -> dict:
        """d"""

    @byzerllm.prompt(llm=llm)
    def as_list() -> list[int]:
        """l"""

    assert as_dict() == {"a": 1} and as_list() == [1, 2]
    assert as_dict.with_return_type(Story).run() == Story(title="t", body="b")


def test_extractor_runs_on_the_text():
    llm = ScriptedLLM("pattern: <REGEX>^a+$</REGEX> done")

    @byzerllm.prompt(llm=llm)
    def gen(desc: str) -> str:
        """{{ desc }} in <REGEX></REGEX>"""

    import re

    assert gen.with_extractor(lambda t: re.search(r"<REGEX>(.*)</REGEX>", t).group(1)).run("a") == "^a+$"


def test_generator_streams_deltas():
    llm = ScriptedLLM("one two three")
    holder: dict = {}

    @byzerllm.prompt(llm=llm)
    def tell() -> Generator[str, None, None]:
        """story"""

    out = tell.with_meta(holder).run()
    assert inspect.isgenerator(out)
    assert "".join(out) == "one two three "
    assert holder["finish_reason"] == "stop"

    @byzerllm.prompt(llm=ScriptedLLM("a b"))
    def tell2() -> Iterator[str]:
        """story"""

    assert list(tell2()) == ["a ", "b "]


def test_async_functions_give_awaitables_and_async_iterators():
    llm = ScriptedLLM("hello", '{"title": "t", "body": "b"}', "x y")

    @byzerllm.prompt(llm=llm)
    async def hi(name: str) -> str:
        """hi {{ name }}"""

    @byzerllm.prompt(llm=llm)
    async def story() -> Story:
        """s"""
        return {}

    @byzerllm.prompt(llm=llm)
    async def stream() -> AsyncIterator[str]:
        """st"""

    async def main():
        assert await hi.prompt("a") == "hi a"
        assert await hi("a") == "hello"
        assert await story() == Story(title="t", body="b")
        return [d async for d in stream()]

    assert asyncio.run(main()) == ["x ", "y "]


def test_images_render_as_content_parts(tmp_path):
    img = tmp_path / "cat.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    llm = ScriptedLLM("a cat")

    @byzerllm.prompt(llm=llm)
    def what_in_image(image_path: ImagePath) -> str:
        """
        {{ image_path }}
        这个图片里有什么？
        """

    assert what_in_image.prompt(ImagePath(value=str(img))) == "<image>\n这个图片里有什么？"
    assert what_in_image(ImagePath(value=str(img))) == "a cat"
    content = llm.calls[0]["messages"][0]["content"]
    assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1] == {"type": "text", "text": "这个图片里有什么？"}

    @byzerllm.prompt()
    def loaded(image_path: str) -> str:
        """{{ image }} what?"""
        return {"image": byzerllm.Image.load_image_from_path(image_path)}

    assert loaded.prompt(str(img)) == "<image> what?"
    with pytest.raises(InvalidRequestError, match="file does not exist"):
        loaded.prompt(str(tmp_path / "missing.png"))
    # Byzer-LLM's load_image_from_path returns the tagged form (utils/nontext.py, Image.load_image_from_path);
    # the JSON message form still becomes an image_url part with the bare data: URL
    payload = json.dumps([{"image": byzerllm.Image.load_image_from_path(str(img)), "text": "x"}])
    assert json.loads(payload)[0]["image"].startswith("<_image_>data:image/png")
    parts = legacy_parts(payload)
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1] == {"type": "text", "text": "x"}


def test_extract_code():
    from byzerllm.utils.client import code_utils

    text = "intro\n```shell\nls -l\n```\nthen\n```python\nprint(1)\nprint(2)\n```\n"
    assert code_utils.extract_code(text) == [("shell", "ls -l"), ("python", "print(1)\nprint(2)")]
    assert code_utils.extract_code("no fences") == [("unknown", "no fences")]


def test_typed_output_cut_off_under_a_grammar_is_sampled_again_with_the_next_seed():
    @byzerllm.prompt()
    def tell_story() -> Story:
        """讲一个故事。"""

    llm = ScriptedLLM(
        ('{"title": "la la la la', "length"),
        '{"title": "T", "body": "B"}',
        meta={"support_response_format": ["json_schema"]},
    )
    story = tell_story.with_llm(llm).options({"llm_config": {"seed": 4}}).run()
    assert story == Story(title="T", body="B")
    assert llm.calls[1]["messages"] == llm.calls[0]["messages"]  # the loop is not shown to the model
    assert (llm.calls[0]["llm_config"]["seed"], llm.calls[1]["llm_config"]["seed"]) == (4, 5)


@pytest.mark.parametrize(
    ("first", "resampled"),
    [(('{"title": {"a": 1}, "body": "la la la', "length"), True), ('{"title": "T"}', False)],
    ids=["constrained JSON cut off", "a validation error"],
)
def test_typed_prompt_functions_and_response_class_repair_by_one_rule(first, resampled):
    @byzerllm.prompt()
    def tell_story() -> Story:
        """讲一个故事。"""

    good = '{"title": "T", "body": "B"}'
    grammar = {"support_response_format": ["json_schema"]}
    by_prompt = ScriptedLLM(first, good, meta=grammar)
    assert tell_story.with_llm(by_prompt).options({"llm_config": {"seed": 4}}).run() == Story(title="T", body="B")
    by_client = ScriptedLLM(first, good, meta=grammar)
    ask = [{"role": "user", "content": "讲一个故事。"}]
    value, _, reason = run_plan(class_plan(ask, Story, False, "constrained", {"seed": 4}), by_client, "m")
    assert value == Story(title="T", body="B") and reason == ""
    for llm in (by_prompt, by_client):
        again = llm.calls[1]
        if resampled:
            assert again["messages"] == llm.calls[0]["messages"] and again["llm_config"]["seed"] == 5
        else:
            assert again["messages"][-2] == {"role": "assistant", "content": first}
            assert "Field required" in last_user(again) and last_user(again).endswith(REASK)
            assert again["llm_config"]["seed"] == 4


def test_a_second_failure_raises_with_the_last_answer_and_notes_a_cut_off():
    @byzerllm.prompt()
    def tell_story() -> Story:
        """讲一个故事。"""

    llm = ScriptedLLM(
        ('{"title": "la', "length"), ('{"title": "la la', "length"), meta={"support_response_format": ["json_schema"]}
    )
    with pytest.raises(OutputParseError, match=r"no JSON value.*\(the output was cut off by max_length\)") as info:
        tell_story.with_llm(llm).run()
    assert info.value.output == '{"title": "la la' and len(llm.calls) == 2


def test_sync_and_async_functions_get_their_own_class():
    @byzerllm.prompt()
    def hello(q: str) -> str:
        """hi {{ q }}"""

    @byzerllm.prompt
    async def ahello(q: str) -> str:
        """hi {{ q }}"""

    assert type(hello) is PromptFunction and type(ahello) is AsyncPromptFunction
    assert type(hello.with_llm("m").with_max_turns(2)) is PromptFunction
    assert type(ahello.with_return_type(Story)) is AsyncPromptFunction
    with pytest.raises(TypeError, match="is async def: wrap it in AsyncPromptFunction"):
        PromptFunction(ahello.__wrapped__)
    with pytest.raises(TypeError, match="is not async def: wrap it in PromptFunction"):
        AsyncPromptFunction(hello.__wrapped__)
