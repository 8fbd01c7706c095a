"""The quick guide's prompt-function examples on the built-in model deployed on Ray."""

import re
from collections.abc import Generator

import pydantic
import pytest

import byzerllm
from byzerllm import ByzerLLM

pytestmark = pytest.mark.integration

DATA = {
    "name": "Jane Doe",
    "task_count": 3,
    "tasks": [
        {"name": "Submit report", "due_date": "2024-03-10"},
        {"name": "Finish project", "due_date": "2024-03-15"},
        {"name": "Reply to emails", "due_date": "2024-03-08"},
    ],
}


class Story(pydantic.BaseModel):
    """故事"""

    title: str = pydantic.Field(description="故事的标题")
    body: str = pydantic.Field(description="故事主体")


@pytest.fixture(scope="module")
def client(smollm2_chat):
    return ByzerLLM.from_default_model(model=smollm2_chat)


def test_hello_world_prompt_and_with_llm(client, smollm2_chat):
    @byzerllm.prompt(llm=client)
    def hello(q: str) -> str:
        """
        你好, {{ q }}
        """

    assert hello.prompt("你是谁") == "你好, 你是谁"
    s = hello.options({"llm_config": {"max_length": 20}}).run("你是谁")
    assert isinstance(s, str) and s
    s = hello.with_llm(client).options({"llm_config": {"max_length": 20}}).run("你是谁")
    assert isinstance(s, str) and s

    @byzerllm.prompt(llm=smollm2_chat)  # a deployed model's name works too
    def by_name() -> str:
        """Say hi."""

    assert isinstance(by_name.options({"llm_config": {"max_length": 5}}).run(), str)


def test_long_text_with_response_markers_and_max_length_10(client):
    @byzerllm.prompt()
    def tell_story() -> str:
        """
        讲一个100字的故事。
        """

    meta: dict = {}
    s = (
        tell_story.with_llm(client)
        .with_response_markers()
        .with_meta(meta)
        .with_max_turns(6)
        .options({"llm_config": {"max_length": 10}})
        .run()
    )
    assert meta["turns"] > 1
    assert "<RESPONSE>" not in s and "</RESPONSE>" not in s
    assert meta["generated_tokens_count"] > 10  # longer than one turn may produce
    assert len(s) > 10


def test_story_return_type(client):
    @byzerllm.prompt()
    def tell_story() -> Story:
        """
        讲一个100字的故事。
        """

    # seeded: unseeded, SmolLM2 loops inside the title string up to max_length about 1 time in 30
    s = tell_story.with_llm(client).options({"llm_config": {"max_length": 300, "seed": 4}}).run()
    assert isinstance(s, Story)
    assert isinstance(s.title, str) and isinstance(s.body, str)


def test_regex_example_with_extractor(client):
    @byzerllm.prompt()
    def generate_regex_pattern(desc: str) -> str:
        """
        根据下面的描述生成一个正则表达式，要符合python re.compile 库的要求。

        {{ desc }}

        最后生成的正则表达式要在<REGEX></REGEX>标签对里。
        """

    seen = []

    def extract_regex_pattern(regex_block: str) -> str | None:
        seen.append(regex_block)
        pattern = re.search(r"<REGEX>(.*)</REGEX>", regex_block, re.DOTALL)
        return None if pattern is None else pattern.group(1)

    v = (
        generate_regex_pattern.with_llm(client)
        .with_extractor(extract_regex_pattern)
        .options({"llm_config": {"max_length": 60}})
        .run(desc="匹配一个邮箱地址")
    )
    assert len(seen) == 1  # the extractor ran once, on the model's text
    assert v == extract_regex_pattern(seen[0])


def test_instance_method_with_lambda_self_llm(smollm2_chat):
    class RAG:
        def __init__(self):
            self.llm = byzerllm.ByzerLLM()
            self.llm.setup_template(model=smollm2_chat, template="auto")
            self.llm.setup_default_model_name(smollm2_chat)
            self.llm.setup_extra_generation_params(smollm2_chat, {"max_length": 30})

        @byzerllm.prompt(lambda self: self.llm)
        def generate_answer(self, name, task_count, tasks) -> str:
            """
            Hello {{ name }},

            This is a reminder that you have {{ task_count }} pending tasks:
            {% for task in tasks %}
            - Task: {{ task.name }} | Due: {{ task.due_date }}
            {% endfor %}

            Best regards,
            Your Reminder System
            """

    t = RAG()
    assert "- Task: Finish project | Due: 2024-03-15" in t.generate_answer.prompt(**DATA)
    response = t.generate_answer(**DATA)
    assert isinstance(response, str) and response


def test_body_returning_tasks(smollm2_chat):
    class RAG:
        def __init__(self):
            self.llm = byzerllm.ByzerLLM.from_default_model(model=smollm2_chat)

        @byzerllm.prompt()
        def generate_answer(self, name, task_count, tasks) -> str:
            """
            Hello {{ name }},

            This is a reminder that you have {{ task_count }} pending tasks:

            {{ tasks }}

            Best regards,
            Your Reminder System
            """
            tasks_str = "\n".join([f"- Task: {task['name']} | Due: {task['due_date']}" for task in tasks])
            return {"tasks": tasks_str}

    t = RAG()
    rendered = t.generate_answer.prompt(**DATA)
    assert "- Task: Submit report | Due: 2024-03-10\n- Task: Finish project" in rendered
    response = t.generate_answer.with_llm(t.llm).options({"llm_config": {"max_length": 30}}).run(**DATA)
    assert isinstance(response, str) and response


def test_generator_streaming_joins_to_the_full_text(client):
    @byzerllm.prompt()
    def tell_story() -> Generator[str, None, None]:
        """
        给我讲一个一百多字的故事
        """

    config = {"llm_config": {"max_length": 40, "seed": 3}}
    pieces = list(tell_story.with_llm(client).options(config).run())
    assert len(pieces) > 5
    whole = tell_story.with_llm(client).options(config).with_return_type(str).run()
    assert "".join(pieces) == whole


async def test_async_prompt_function(client):
    @byzerllm.prompt(llm=client)
    async def hello(q: str) -> str:
        """你好, {{ q }}"""

    s = await hello.options({"llm_config": {"max_length": 10}})("你是谁")
    assert isinstance(s, str)


def test_unknown_model_name_lists_the_deployed_ones(smollm2_chat):
    from byzerllm.errors import ModelNotFoundError

    @byzerllm.prompt(llm="no_such_model")
    def hello() -> str:
        """hi"""

    with pytest.raises(ModelNotFoundError, match=smollm2_chat):
        hello()
