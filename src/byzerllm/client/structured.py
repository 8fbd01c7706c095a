"""``chat_oai(tools=...)``, ``chat_oai(response_class=...)``, ``chat_oai(impl_func=...)`` and
``@llm.impl``: the structured layers of ``byzerllm.structured`` bound to a client."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ByzerLLMError, InvalidRequestError
from ..structured import impl as impl_mod
from ..structured.layers import class_plan, pick_strategy, tool_call_plan
from ..structured.plan import Plan, run_plan
from ..structured.tools import call_schema, choose, execute, new_call_id, parse_call, to_tools, tools_prompt
from ..types import LLMClassResponse, LLMFunctionCallResponse, LLMResponse, SingleOutputMeta


class ImplError(ByzerLLMError):
    """``@llm.impl`` could not produce a valid result; the message is the reason."""

    status_code = 502


def _usage(responses: list[LLMResponse]) -> dict[str, Any]:
    ms = [r.metadata for r in responses]
    return {
        "input_tokens_count": sum(m.get("input_tokens_count", 0) for m in ms),
        "generated_tokens_count": sum(m.get("generated_tokens_count", 0) for m in ms),
        "time_cost": sum(m.get("time_cost", 0.0) for m in ms),
        "requests": len(ms),
    }


class StructuredMixin:
    """Methods of ``ByzerLLM`` for tools, typed responses and function impl."""

    def _init_structured(self) -> None:
        self.structured_strategies: dict[str, str] = {}
        self.function_calling_format_funcs: dict[str, Callable] = {}
        self.response_class_format_funcs: dict[str, Callable] = {}
        self.impl_func_format_funcs: dict[str, Callable] = {}

    # --- settings ----------------------------------------------------------------------
    def setup_structured_strategy(self, model: str, strategy: str) -> StructuredMixin:
        """``auto`` (from get_meta), ``constrained`` (grammar / response_format) or ``prompt``."""
        pick_strategy({}, strategy)
        self.structured_strategies[model] = strategy
        return self

    def setup_function_calling_format_func(self, model: str, func: Callable[[list[dict]], str]) -> StructuredMixin:
        """``func(tools)`` -> the system text that presents ``tools`` (OpenAI format) and asks for
        ``{"name": ..., "arguments": {...}}``."""
        self.function_calling_format_funcs[model] = func
        return self

    def setup_response_class_format_func(self, model: str, func: Callable[[dict], str]) -> StructuredMixin:
        """``func(json_schema)`` -> the system text that asks for JSON of that schema."""
        self.response_class_format_funcs[model] = func
        return self

    def setup_impl_func_format_func(self, model: str, func: Callable[[str, str | None], str]) -> StructuredMixin:
        """``func(function_source, instruction)`` -> the prompt that asks for the function's code."""
        self.impl_func_format_funcs[model] = func
        return self

    def _strategy(self, name: str, for_tools: bool = False) -> str:
        return pick_strategy(self.get_meta(model=name), self.structured_strategies.get(name, "auto"), for_tools)

    # --- chat_oai with a layer ---------------------------------------------------------
    def _structured_chat(
        self,
        name: str,
        conversations: list[dict[str, Any]],
        llm_config: dict[str, Any],
        tools: Any,
        tool_choice: Any,
        execute_tool: bool,
        func_params: dict | None,
        response_class: Any,
        response_after_chat: bool,
        impl_func: Callable | None,
        execute_impl_func: bool,
        impl_func_params: dict | None,
        impl_instruction: str | None,
    ):
        responses: list[LLMResponse] = []
        if impl_func is not None:
            value, code, reason = self._impl(
                name, impl_func, impl_func_params or {}, impl_instruction, llm_config, execute_impl_func, responses
            )
            return LLMFunctionCallResponse(
                responses[-1] if responses else LLMResponse(code, {}, {}),
                [value] if execute_impl_func and not reason else [],
                {"reason": reason, "selected_functions": [impl_func.__name__], "code": code, **_usage(responses)},
            )
        strategy = self._strategy(name, for_tools=tools is not None)
        if tools is not None:
            allowed = choose(to_tools(tools), tool_choice)
            plan = tool_call_plan(
                conversations, allowed, strategy, llm_config, self.function_calling_format_funcs.get(name)
            )
            call, _, reason = run_plan(plan, self, name, responses)
            values: list[Any] = []
            if call is not None and execute_tool:
                value, reason = execute(allowed, call, func_params)
                values = [] if reason else [value]
            return LLMFunctionCallResponse(
                responses[-1],
                values,
                {
                    "reason": reason,
                    "selected_functions": [call.name] if call else [],
                    "tool_calls": [call.to_dict()] if call else [],
                    "strategy": strategy,
                    **_usage(responses),
                },
            )
        plan = class_plan(
            conversations,
            response_class,
            response_after_chat,
            strategy,
            llm_config,
            self.response_class_format_funcs.get(name),
        )
        value, _, reason = run_plan(plan, self, name, responses)
        return LLMClassResponse(responses[-1], value, {"reason": reason, "strategy": strategy, **_usage(responses)})

    # --- streaming tool calls ------------------------------------------------------------
    def _stream_tool_calls(
        self, name: str, conversations: list[dict[str, Any]], llm_config: dict[str, Any], tools: Any, tool_choice: Any
    ) -> Iterator[tuple[str, SingleOutputMeta]]:
        """Tool-call deltas in OpenAI's order: the name once, then argument fragments as they are
        generated; the last item has ``finish_reason == "tool_calls"``."""
        allowed = choose(to_tools(tools), tool_choice)
        strategy = self._strategy(name, for_tools=True)
        if strategy != "constrained":  # a call is known only once it is parsed
            responses: list[LLMResponse] = []
            call, _, reason = run_plan(
                tool_call_plan(
                    conversations, allowed, strategy, llm_config, self.function_calling_format_funcs.get(name)
                ),
                self,
                name,
                responses,
            )
            if call is None:
                raise ByzerLLMError(f"the model did not produce a valid tool call: {reason}")
            yield "", SingleOutputMeta(tool_calls=[_delta(call.id, call.name, None)])
            yield "", SingleOutputMeta(tool_calls=[_delta(None, None, json.dumps(call.arguments, ensure_ascii=False))])
            yield "", SingleOutputMeta(finish_reason="tool_calls", **_stream_usage(responses))
            return
        fmt = self.function_calling_format_funcs.get(name)
        system = fmt([t.openai() for t in allowed]) if fmt else tools_prompt(allowed)
        from ..structured.layers import _with_system

        messages = _with_system(conversations, system)
        extra = {
            "response_format": {"type": "json_schema", "json_schema": {"name": "call", "schema": call_schema(allowed)}}
        }
        parser = _CallStreamParser()
        meta = SingleOutputMeta()
        for piece, meta in self.stream_chat_oai(
            messages, model=name, llm_config=llm_config, delta_mode=True, extra_request_params=extra
        ):
            for delta in parser.feed(piece):
                yield (
                    "",
                    SingleOutputMeta(
                        input_tokens_count=meta.input_tokens_count,
                        generated_tokens_count=meta.generated_tokens_count,
                        tool_calls=[delta],
                    ),
                )
        for delta in parser.close():
            yield "", SingleOutputMeta(tool_calls=[delta])
        parse_call(allowed, json.loads(parser.text))  # the grammar makes this hold; raises if not
        yield (
            "",
            SingleOutputMeta(
                input_tokens_count=meta.input_tokens_count,
                generated_tokens_count=meta.generated_tokens_count,
                first_token_time=meta.first_token_time,
                time_cost=meta.time_cost,
                finish_reason="tool_calls",
            ),
        )

    # --- impl ----------------------------------------------------------------------------
    def _impl(
        self,
        name: str,
        fn: Callable,
        kwargs: dict[str, Any],
        instruction: str | None,
        llm_config: dict[str, Any],
        execute_code: bool,
        responses: list[LLMResponse],
        skip_cache: bool = False,
    ) -> tuple[Any, str, str]:
        path = impl_mod.cache_path(name, fn, instruction)
        code = None if skip_cache else impl_mod.read_cache(path)
        if code is not None:
            if not execute_code:
                return None, code, ""
            value, reason = impl_mod.execute(fn, code, kwargs)
            return value, code, reason
        config = {"max_length": 512, **llm_config}  # a function, not an essay
        plan: Plan = impl_mod.impl_plan(
            fn, kwargs, instruction, config, self.impl_func_format_funcs.get(name), execute_code
        )
        try:
            value, code, reason = run_plan(plan, self, name, responses)
        except InvalidRequestError as exc:  # e.g. a re-ask that outgrew the context: an answer, not a crash
            return None, "", str(exc)
        if not reason and execute_code:
            impl_mod.write_cache(path, code)
        return value, code, reason

    def impl(
        self,
        instruction: str | None = None,
        skip_cache: bool = False,
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
    ) -> Callable[[Callable], Callable]:
        """Decorate a declared function (signature, docstring, return type, empty body): calling
        it has the model write the body, runs it in the sandbox and returns the validated value.

        The code is cached on disk (see ``byzerllm.structured.impl``); ``skip_cache=True``
        regenerates it. Raises ``ImplError`` with the reason when no valid result came out.
        """

        def decorate(fn: Callable) -> Callable:
            signature = inspect.signature(fn)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                name = self._model(model)
                value, _, reason = self._impl(
                    name, fn, dict(bound.arguments), instruction, dict(llm_config or {}), True, [], skip_cache
                )
                if reason:
                    raise ImplError(f"{fn.__name__}: {reason}", reason=reason)
                return value

            return wrapper

        return decorate

    def clear_impl_cache(self, func: Callable | None = None) -> int:
        """Remove the cached code of ``func`` (every function when None); returns files removed."""
        return impl_mod.clear_cache(getattr(func, "__wrapped__", func))


def _delta(call_id: str | None, name: str | None, arguments: str | None) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    function["arguments"] = arguments if arguments is not None else ""
    delta: dict[str, Any] = {"index": 0, "function": function}
    if call_id is not None:
        delta.update(id=call_id, type="function")
    return delta


def _stream_usage(responses: list[LLMResponse]) -> dict[str, Any]:
    usage = _usage(responses)
    return {
        "input_tokens_count": usage["input_tokens_count"],
        "generated_tokens_count": usage["generated_tokens_count"],
        "time_cost": usage["time_cost"],
    }


class _CallStreamParser:
    """Turns the streamed text of ``{"name": "...", "arguments": {...}}`` (the grammar fixes that
    order) into OpenAI tool-call deltas: the name once, then the arguments' JSON text in pieces.
    The trailing ``}`` of the wrapper object is held back until the stream ends."""

    _HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')

    def __init__(self) -> None:
        self.text = ""
        self.args_start: int | None = None
        self.sent = 0
        self.id = new_call_id()

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        out = []
        if self.args_start is None:
            m = self._HEAD.match(self.text)
            if not m:
                return out
            self.args_start = self.sent = m.end()
            out.append(_delta(self.id, json.loads(f'"{m.group(1)}"'), None))
        held = len(self.text) - len(self.text.rstrip().removesuffix("}").rstrip())
        end = len(self.text) - held
        if end > self.sent:
            out.append(_delta(None, None, self.text[self.sent : end]))
            self.sent = end
        return out

    def close(self) -> list[dict[str, Any]]:
        if self.args_start is None:
            return []
        body = self.text.rstrip()
        end = len(body.removesuffix("}").rstrip()) if body.endswith("}") else len(body)
        if end > self.sent:
            piece, self.sent = self.text[self.sent : end], end
            return [_delta(None, None, piece)]
        return []
