"""Plans: the logic of a multi-step call written once, run by a sync or an async driver.

A plan is a generator that yields ``Call``s (the chat requests it needs) and receives each
``LLMResponse``; its return value is the result. ``run_plan`` sends the calls with
``client.chat_oai``, ``arun_plan`` with ``client.async_chat_oai``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from ..types import LLMResponse


@dataclass
class Call:
    """One chat request of a plan: messages, ``llm_config`` and ``extra_request_params``."""

    messages: list[dict[str, Any]]
    llm_config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


Plan = Generator[Call, LLMResponse, Any]


def run_plan(plan: Plan, client: Any, model: str, responses: list[LLMResponse] | None = None) -> Any:
    """Drive ``plan`` with blocking calls; every response is appended to ``responses``."""
    try:
        call = next(plan)
        while True:
            [resp] = client.chat_oai(call.messages, model=model, llm_config=call.llm_config,
                                     extra_request_params=call.extra)
            if responses is not None:
                responses.append(resp)
            call = plan.send(resp)
    except StopIteration as done:
        return done.value


async def arun_plan(plan: Plan, client: Any, model: str, responses: list[LLMResponse] | None = None) -> Any:
    """Drive ``plan`` with awaited calls; every response is appended to ``responses``."""
    try:
        call = next(plan)
        while True:
            [resp] = await client.async_chat_oai(call.messages, model=model, llm_config=call.llm_config,
                                                 extra_request_params=call.extra)
            if responses is not None:
                responses.append(resp)
            call = plan.send(resp)
    except StopIteration as done:
        return done.value
