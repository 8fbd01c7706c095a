"""``@byzerllm.prompt`` as Byzer-LLM's users write it (audit section 4), against a real
``saas/openai`` deployment of the recording upstream (tests/compat/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import byzerllm
from byzerllm.errors import InvalidRequestError


class Filter:
    """A class with prompt functions as auto-coder writes them (index/filter/quick_filter.py)."""

    def __init__(self, llm):
        self.llm = llm

    @byzerllm.prompt(llm=lambda self: self.llm)
    def pick(self, files: list[str], query: str) -> str:
        """
        Files:
        {% for f in files %}- {{ f }}
        {% endfor %}
        {% if extra_docs %}Docs: {{ extra_docs }}{% endif %}
        Query: {{ query }}
        """


def test_a_variable_not_given_renders_empty(llm):
    # R-u:862 / R-init: templates render with jinja2.Template(...).render(), whose Undefined is empty;
    # auto-coder's common/code_auto_generate.py:57 single_round_instruction leaves extra_docs unset
    text = Filter(llm).pick.prompt(["a.py", "b.py"], "where is main?")
    assert "Docs" not in text and "- a.py" in text and "Query: where is main?" in text


def test_strict_mode_names_the_missing_variable():
    @byzerllm.prompt(strict=True)
    def f(query: str) -> str:
        """{{ query }} {{ extra_docs }}"""

    with pytest.raises(InvalidRequestError, match="extra_docs") as info:
        f.prompt("q")
    assert info.value.param == "extra_docs"


def test_with_meta_fills_a_meta_holder(llm, upstream):
    # R-init:241 MetaHolder(meta).get_meta() / .get_meta_model(); R-sc:929 holder.meta = the response's
    # metadata; auto-coder reads input_tokens_count / generated_tokens_count (rag/doc_filter.py)
    holder = byzerllm.MetaHolder()
    assert holder.get_meta() == {} and holder.get_meta_model() is None
    out = Filter(llm).pick.with_meta(holder).run(["a.py"], "q")
    assert out == upstream.text
    meta = holder.get_meta()
    assert meta["input_tokens_count"] == 3 and meta["generated_tokens_count"] == 1
    model = holder.get_meta_model()
    assert model.input_tokens_count == 3 and model.finish_reason == "stop"


def test_with_meta_after_a_stream_holds_the_last_meta(llm):
    @byzerllm.prompt(llm=llm)
    def story() -> Iterator[str]:
        """Tell a story."""

    holder = byzerllm.MetaHolder()
    assert "".join(story.with_meta(holder).run()) == '{"value": true}'
    assert holder.get_meta()["generated_tokens_count"] == 2 and holder.get_meta()["finish_reason"] == "stop"


def test_decorator_takes_check_result_and_the_real_argument_order(llm):
    # R-init:756 prompt(llm=None, render="jinja2", check_result=False, options={})
    @byzerllm.prompt(llm, "jinja2", True, {"llm_config": {"max_length": 10}})
    def yes() -> byzerllm.types.Bool:
        """Say yes."""

    assert yes().value is True


def test_a_client_method_is_a_prompt_decorator(llm, upstream):
    # R-sc:827 / R-bc:1452 llm.prompt(model=None, render="jinja2", check_result=False, options={})
    @llm.prompt(options={"llm_config": {"max_length": 12}})
    def hello(name: str) -> str:
        """Say hello to {{ name }}."""

    assert hello("Ann") == upstream.text
    assert upstream.bodies[-1]["max_tokens"] == 12 and upstream.bodies[-1]["messages"][-1]["content"] == (
        "Say hello to Ann."
    )


def test_response_markers_take_the_real_keywords(llm, upstream):
    # R-init:337 with_response_markers(response_markers=None, response_markers_template=None); the
    # template is Jinja2 over RESPONSE_START and RESPONSE_END
    upstream.text = "done</END>"

    @byzerllm.prompt(llm=llm)
    def write() -> str:
        """Write."""

    out = write.with_response_markers(
        response_markers=["<START>", "</END>"],
        response_markers_template="Begin with {{ RESPONSE_START }}, end with {{ RESPONSE_END }}.",
    ).run()
    assert out == "done"
    asked = upstream.bodies[-1]["messages"][0]["content"]
    assert asked.endswith("Begin with <START>, end with </END>.")
    with pytest.raises(InvalidRequestError, match="two non-empty strings"):
        write.with_response_markers(response_markers=["only one"])
