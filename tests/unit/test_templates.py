import pytest

from byzerllm import Template, Templates
from byzerllm.errors import InvalidRequestError


def test_chatml_renders_a_generation_prompt():
    prompt = Templates.chatml("Be brief.").render([{"role": "user", "content": "hi"}])
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_an_explicit_system_message_replaces_the_default_one():
    prompt = Templates.chatml().render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert prompt.count("system") == 1 and "S<|im_end|>" in prompt


def test_role_mapping_overrides_and_unknown_keys_are_refused():
    t = Templates.default().with_roles({"user_role": "Q: ", "assistant_role": "A: "})
    assert t.render([{"role": "user", "content": "x"}]) == "Q: x\nA: "
    with pytest.raises(InvalidRequestError, match="user_role"):
        Template({"human_role": "H:"})
