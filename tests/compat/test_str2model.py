"""``byzerllm.utils.str2model.to_model`` gives what Byzer-LLM's gives (utils/str2model.py, to_model)."""

import dataclasses
import pickle

import pydantic
import pytest

from byzerllm.errors import OutputParseError
from byzerllm.utils.str2model import ModelTextError, to_model


class Item(pydantic.BaseModel):
    name: str
    count: int = 0


@dataclasses.dataclass
class Pair:
    a: int
    b: int


def test_a_whole_json_fence_is_parsed():
    # real: str2model.py::to_model, the startswith("```json") and endswith("```") quick path
    assert to_model('```json\n{"name": "x", "count": 2}\n```', Item) == Item(name="x", count=2)


def test_the_last_code_block_is_parsed_when_the_answer_has_prose():
    # real: str2model.py::to_model, code_utils.extract_code(result)[-1][1]
    text = 'first:\n```json\n{"name": "old"}\n```\nfinal:\n```json\n{"name": "new"}\n```\n'
    assert to_model(text, Item) == Item(name="new")


def test_bare_json_without_a_fence_is_parsed():
    # real: str2model.py::to_model, extract_code returns the whole text as ("unknown", text)
    assert to_model('{"a": 1, "b": 2}', Pair) == Pair(1, 2)


def test_a_json_list_gives_a_list_of_instances():
    # real: str2model.py::to_model, `[model_class(**item) for item in json_data]`
    assert to_model('```json\n[{"name": "a"}, {"name": "b"}]\n```', Item) == [Item(name="a"), Item(name="b")]


def test_json_with_prose_around_it_is_read_leniently():
    # real: str2model.py::to_model falls back to json5 (not installed here: the first JSON value is taken)
    assert to_model('Sure! {"name": "x"} is the answer.', Item) == Item(name="x")


def test_a_non_string_is_a_value_error():
    # real: str2model.py::to_model, `raise ValueError("The decorated function must return a string")`
    with pytest.raises(ValueError):
        to_model({"name": "x"}, Item)


def test_text_without_json_is_a_type_error():
    # real: str2model.py::to_model, the TagExtractor fallback ends in json.loads(list), a TypeError
    with pytest.raises(TypeError) as info:
        to_model("no json here", Item)
    assert isinstance(info.value, OutputParseError) and info.value.output == "no json here"


def test_a_class_that_cannot_take_the_keys_is_a_type_error():
    # real: str2model.py::to_model, `except TypeError: raise TypeError("Unable to create model instance ...")`
    with pytest.raises(TypeError, match="Pair"):
        to_model('{"a": 1, "c": 3}', Pair)


def test_a_json_value_that_is_not_an_object_is_a_type_error():
    # real: str2model.py::to_model, model_class(**5) raises TypeError, re-raised as TypeError
    with pytest.raises(TypeError):
        to_model("5", Item)


def test_a_pydantic_validation_error_is_not_turned_into_a_type_error():
    # real: str2model.py::to_model only catches TypeError; ValidationError is a ValueError
    with pytest.raises(pydantic.ValidationError):
        to_model('{"count": 1}', Item)


def test_the_parse_error_survives_pickling():
    # ours: errors cross Ray, so ModelTextError keeps its output when pickled
    err = pickle.loads(pickle.dumps(ModelTextError("no JSON", output="x")))
    assert isinstance(err, TypeError) and err.output == "x"
