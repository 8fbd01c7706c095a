"""The one rule for a structured answer that does not parse: ask once more.

Both typed prompt functions (``byzerllm.prompt``) and ``chat_oai(response_class=...)`` /
``chat_oai(tools=...)`` (``structured.layers``) get their JSON through ``parsed_plan``:

1. ask (``ask(messages, llm_config)``, a plan of one or more requests) and ``parse`` the text;
2. on an ``OutputParseError``, ask a second time:

   - **sample again** when the output was grammar-constrained (``constrained``) and cut off by
     ``max_length`` (the last request ended with ``finish_reason == "length"``): the grammar keeps
     the JSON valid, so it was cut while the model repeated itself, and showing the model its loop
     does not help. Same messages; ``seed + 1`` when the call has a seed (``resampled``);
   - **re-ask** otherwise: the answer goes back as the assistant's turn, followed by the error and
     ``REASK``, so the model sees what was wrong;

3. a second failure is the result's ``reason``: the error's message, noting a cut-off.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple, TypeVar

from ..errors import OutputParseError
from ..types import LLMResponse
from .plan import Call

T = TypeVar("T")

REASK = "Answer again with only the corrected JSON."
CUT_OFF = " (the output was cut off by max_length)"


class Answer(NamedTuple):
    """The text of one answer (joined over its turns) and whether its last turn hit ``max_length``."""

    text: str
    cut_off: bool

    @classmethod
    def of(cls, resp: LLMResponse, text: str | None = None) -> Answer:
        """``resp``'s output (or ``text``, e.g. with a prefill) and its ``finish_reason``."""
        return cls(resp.output if text is None else text, resp.metadata.get("finish_reason") == "length")


# a plan that asks for one answer: (messages, llm_config) -> requests ... -> Answer
Ask = Callable[[list[dict[str, Any]], dict[str, Any]], Generator[Call, LLMResponse, Answer]]


def resampled(llm_config: dict[str, Any]) -> dict[str, Any]:
    """``llm_config`` for sampling the same request again: its ``seed`` (if any) plus one."""
    seed = llm_config.get("seed")
    return {**llm_config, "seed": seed + 1} if isinstance(seed, int) else llm_config


def one_call(extra: dict[str, Any]) -> Ask:
    """An ``Ask`` of a single request with ``extra_request_params`` ``extra``."""

    def ask(messages: list[dict[str, Any]], llm_config: dict[str, Any]) -> Generator[Call, LLMResponse, Answer]:
        resp = yield Call(messages, dict(llm_config), extra)
        return Answer.of(resp)

    return ask


def parsed_plan(
    ask: Ask,
    messages: list[dict[str, Any]],
    llm_config: dict[str, Any],
    parse: Callable[[str], T],
    constrained: bool,
) -> Generator[Call, LLMResponse, tuple[T | None, str, str]]:
    """Ask, ``parse`` the text, and on an ``OutputParseError`` ask once more (the module's rule).

    ``messages``: OpenAI messages; ``llm_config``: the call's config (its ``seed`` moves on a
    resample); ``parse(text)`` returns the value or raises ``OutputParseError``, whose message is
    what a re-ask shows the model; ``constrained``: the calls carry a JSON-schema
    ``response_format``. Returns ``(value, text, "")``, or ``(None, text, reason)`` after two
    failures; ``text`` is the last answer's. Raises only what ``ask`` raises.
    """
    answer, reason = Answer("", False), ""
    for attempt in (0, 1):
        answer = yield from ask(messages, llm_config)
        try:
            return parse(answer.text), answer.text, ""
        except OutputParseError as exc:
            reason = str(exc) + (CUT_OFF if answer.cut_off else "")
        if attempt == 0 and constrained and answer.cut_off:
            llm_config = resampled(llm_config)
        elif attempt == 0:
            messages = [
                *messages,
                {"role": "assistant", "content": answer.text},
                {"role": "user", "content": f"{reason}\n{REASK}"},
            ]
    return None, answer.text, reason
