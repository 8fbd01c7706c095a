"""A model's JSON answer turned into instances of a class (``byzerllm.utils.str2model.to_model``).

Byzer-LLM's ``to_model`` rules: the JSON is the text inside a ```` ```json ```` fence that wraps the
whole answer, else the last code block (the whole text when there is none); it is parsed as JSON,
then leniently; a JSON array gives one instance per item, an object one instance.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from ..errors import OutputParseError
from .code import extract_code
from .output import extract_json

T = TypeVar("T")

logger = logging.getLogger(__name__)


class ModelTextError(OutputParseError, TypeError):
    """No JSON could be read from the text given to ``to_model``; ``output`` is the text.

    A ``TypeError`` as well, since that is what Byzer-LLM raises in this case.
    """


def _json_text(result: str) -> str:
    if result.startswith("```json") and result.endswith("```"):
        return result[len("```json") : -len("```")]
    return extract_code(result)[-1][1]


def _load(result: str) -> Any:
    candidate = _json_text(result)
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    # lenient: the first complete JSON value in the block, then in the whole text
    for text in (candidate, result):
        try:
            return json.loads(extract_json(text))
        except OutputParseError:
            continue
    logger.warning("no JSON value in the model output: %.200r", result)
    raise ModelTextError(f"no JSON value found in the model output: {result[:200]!r}", output=result)


def to_model(result: str, model_class: type[T]) -> T | list[T]:
    """``model_class(**data)`` for the JSON object in ``result``, or a list of them for a JSON array.

    ``model_class`` is any class taking the JSON keys as keyword arguments (a pydantic model, a
    dataclass). Raises ``ValueError`` when ``result`` is not a str, ``ModelTextError`` (a
    ``TypeError``) when no JSON can be read from it, ``TypeError`` when ``model_class`` cannot be
    built from the data (wrong keys, or a JSON value that is not an object), and pydantic's
    ``ValidationError`` (a ``ValueError``) when a pydantic model rejects the values.
    """
    if not isinstance(result, str):
        raise ValueError(f"to_model takes the model's answer as a str, not {type(result).__name__}")
    data = _load(result)
    try:
        if isinstance(data, list):
            return [model_class(**item) for item in data]
        return model_class(**data)
    except TypeError as exc:
        raise TypeError(f"cannot build {model_class.__name__} from the JSON data: {exc}") from exc
