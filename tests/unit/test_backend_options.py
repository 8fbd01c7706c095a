"""Typed backend options: one declaration gives checks, defaults, text typing and the docs' tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from byzerllm.backends import available_backends, get_backend_class
from byzerllm.backends.options import BackendOptions, options_table
from byzerllm.errors import InvalidRequestError, UnsupportedParameterError
from byzerllm.types import TASKS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


@pytest.mark.parametrize("name", available_backends())
def test_every_backend_declares_its_options_as_a_model_that_forbids_extra_keys(name):
    cls = get_backend_class(name)
    assert issubclass(cls.Options, BackendOptions) and cls.Options is not BackendOptions
    assert cls.Options.model_config["extra"] == "forbid"
    for field_name, field in cls.Options.model_fields.items():
        assert field.description, f"{name}.{field_name} has no description"
    defaults = cls.check_options({})
    assert set(defaults) == set(cls.Options.model_fields)
    assert set(cls.tasks) <= set(TASKS)


def test_text_values_are_typed_by_the_declaration():
    llama = get_backend_class("llama_cpp")
    cfg = llama.check_options({"n_threads": "2", "cache_prompt": "false", "seed": "null", "chat_template": "123"})
    assert cfg["n_threads"] == 2 and cfg["cache_prompt"] is False and cfg["seed"] is None
    assert cfg["chat_template"] == "123"  # free text stays text
    openai = get_backend_class("openai")
    cfg = openai.check_options(
        {"fallback_models": '[{"model": "b", "api_key": "k"}]', "api_key": "007", "reasoning_fields": "a, b"}
    )
    assert cfg["fallback_models"] == [{"model": "b", "api_key": "k"}] and cfg["api_key"] == "007"
    assert cfg["reasoning_fields"] == ["a", "b"]
    assert openai.check_options({"fallback_models": "m1, m2"})["fallback_models"] == ["m1", "m2"]
    assert openai.check_options({"is_reasoning": "true", "https_verify": "0"})["https_verify"] is False


@pytest.mark.parametrize(
    "backend,options,param,message",
    [
        ("llama_cpp", {"n_thread": 2}, "n_thread", "did you mean 'n_threads'"),
        ("llama_cpp", {"n_threads": 0}, "n_threads", "greater than or equal to 1"),
        ("llama_cpp", {"n_ctx": "many"}, "n_ctx", "valid integer"),
        ("echo", {"token_delay": -1}, "token_delay", "greater than or equal to 0"),
        ("openai", {"prefix_mode": "openai"}, "prefix_mode", "accepted: auto, deepseek, siliconflow, vllm"),
        ("openai", {"timeout": 0}, "timeout", "greater than 0"),
        ("openai", {"extra_headers": "{broken"}, "extra_headers", "valid dictionary"),
        ("sentence_transformers", {"task": "chat"}, "task", "accepted: auto, embedding, rerank"),
    ],
)
def test_bad_options_name_the_key_and_what_is_accepted(backend, options, param, message):
    with pytest.raises(InvalidRequestError) as info:
        get_backend_class(backend).check_options(options)
    assert info.value.param == param
    assert message in str(info.value)
    if "did you mean" in message:
        assert isinstance(info.value, UnsupportedParameterError)


def test_the_docs_option_tables_are_the_declarations():
    text = DOCS.read_text(encoding="utf-8")
    for name in available_backends():
        match = re.search(rf"<!-- options:{name} -->\n(.*?)\n<!-- /options -->", text, re.S)
        assert match, f"docs/backends.md has no option table for {name}"
        assert match.group(1).strip() == options_table(get_backend_class(name).Options), (
            f"the {name} table in docs/backends.md is stale: regenerate it with `byzerllm backends {name}`"
        )
