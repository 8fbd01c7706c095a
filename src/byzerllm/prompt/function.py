"""``@byzerllm.prompt``: a function whose docstring is a Jinja2 template becomes a typed LLM call.

The return annotation picks the result: ``str``; a pydantic model, ``dict``, ``list[...]`` or any
type pydantic validates (JSON; by a grammar where the backend supports ``response_format``,
otherwise parsed from the text with one repair-and-re-ask); ``Generator[str, None, None]`` /
``Iterator[str]`` (text deltas as generated). ``async def`` functions give awaitables, and
``AsyncIterator[str]`` async iterators.

The logic of one call is written once, as a plan that yields the chat requests it needs and
receives their responses; a sync and an async driver run it against the client.
"""

from __future__ import annotations

import collections.abc
import copy
import functools
import inspect
import time
import typing
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

from ..errors import InvalidRequestError, OutputParseError
from ..structured import format_instruction, parse_as, response_format_for
from ..structured.layers import resampled
from ..structured.output import extract_json
from ..structured.plan import Call as _Call
from ..structured.plan import arun_plan, run_plan
from ..types import LLMResponse
from .template import PromptTemplate, printable, render_string, to_content

_STREAM_ORIGINS = {collections.abc.Generator, collections.abc.Iterator, collections.abc.Iterable}
_ASTREAM_ORIGINS = {collections.abc.AsyncGenerator, collections.abc.AsyncIterator, collections.abc.AsyncIterable}
_OPTION_KEYS = ("llm_config", "model", "extra_request_params")
DEFAULT_MARKERS = ("<RESPONSE>", "</RESPONSE>")
DEFAULT_MAX_TURNS = 10


def _kind(tp: Any) -> str:
    if tp in (str, None, inspect.Signature.empty, Any):
        return "text"
    origin = typing.get_origin(tp)
    if origin in _STREAM_ORIGINS:
        return "stream"
    if origin in _ASTREAM_ORIGINS:
        return "astream"
    return "typed"


def _has_json(text: str) -> bool:
    try:
        extract_json(text)
        return True
    except OutputParseError:
        return False


class PromptFunction:
    """The callable that ``@byzerllm.prompt`` returns. Chain methods return a modified copy."""

    def __init__(
        self, fn: Callable, llm: Any = None, options: dict[str, Any] | None = None, strict: bool = False
    ) -> None:
        self._binding = None
        if isinstance(fn, (staticmethod, classmethod)):
            self._binding = "class" if isinstance(fn, classmethod) else "static"
            fn = fn.__func__
        self._fn = fn
        self._signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable forward references: fall back to the raw annotation
            hints = dict(getattr(fn, "__annotations__", {}))
        self._return_type = hints.get("return", str)
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self._template = PromptTemplate(fn.__doc__, fn.__qualname__, strict)
        self._llm = llm
        self._options: dict[str, Any] = {}
        self._instance: Any = None
        self._bound = False
        self._extractor: Callable[[str], Any] | None = None
        self._markers: tuple[str, str] | None = None
        self._markers_template: str | None = None
        self._max_turns = DEFAULT_MAX_TURNS
        self._return_prefix: str | None = None
        self._stop_suffix_list: list[str] = []
        self._meta_holder: Any = None
        self._conversation: list[dict[str, Any]] = []
        if options:
            self._options = self._checked_options(options)
        functools.update_wrapper(self, fn)

    # --- binding: functions, methods, classmethods, staticmethods -----------------------
    def __get__(self, instance: Any, owner: type | None = None) -> PromptFunction:
        if self._binding == "static":
            return self
        target = owner if self._binding == "class" else instance
        if target is None:
            return self
        bound = copy.copy(self)
        bound._instance, bound._bound = target, True
        return bound

    def __repr__(self) -> str:
        return f"<prompt function {self._fn.__qualname__}>"

    # --- chain methods ---------------------------------------------------------------
    def _with(self, **changes: Any) -> PromptFunction:
        clone = copy.copy(self)
        for key, value in changes.items():
            setattr(clone, key, value)
        return clone

    def with_llm(self, llm: Any) -> PromptFunction:
        """Use ``llm`` (a client, a deployed model's name, or a callable returning one)."""
        return self._with(_llm=llm)

    def _checked_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(options, dict):
            raise InvalidRequestError("options must be a dict", param="options")
        for key in options:
            if key not in _OPTION_KEYS:
                raise InvalidRequestError(
                    f"option {key!r} is unknown; accepted: {', '.join(_OPTION_KEYS)}", param=f"options.{key}"
                )
        merged = {**self._options, **options}
        if "llm_config" in options:
            merged["llm_config"] = {**self._options.get("llm_config", {}), **options["llm_config"]}
        return merged

    def options(self, options: dict[str, Any]) -> PromptFunction:
        """``{"llm_config": {...}, "model": name, "extra_request_params": {...}}`` for the call."""
        return self._with(_options=self._checked_options(options))

    def with_extractor(self, extractor: Callable[[str], Any]) -> PromptFunction:
        """Post-process the model's text; for a typed result it runs before parsing."""
        return self._with(_extractor=extractor)

    def with_response_markers(
        self, response_markers: tuple[str, str] | list[str] | None = None, response_markers_template: str | None = None
    ) -> PromptFunction:
        """Long output: ask for the answer between two markers and keep asking the model to continue
        (assistant prefill) until the end marker, an end of turn, or ``with_max_turns`` turns.
        The markers are removed from the result. ``response_markers_template`` replaces the
        instruction added to the prompt: Jinja2 text over ``RESPONSE_START`` and ``RESPONSE_END``.
        Raises ``InvalidRequestError`` unless ``response_markers`` is None or two strings."""
        markers = response_markers or DEFAULT_MARKERS
        if len(markers) != 2 or not all(isinstance(m, str) and m for m in markers):
            raise InvalidRequestError("response_markers must be two non-empty strings", param="response_markers")
        return self._with(_markers=tuple(markers), _markers_template=response_markers_template)

    def with_max_turns(self, n: int) -> PromptFunction:
        if not isinstance(n, int) or n < 1:
            raise InvalidRequestError(f"max turns must be an integer >= 1, got {n!r}", param="max_turns")
        return self._with(_max_turns=n)

    def with_return_type(self, tp: Any) -> PromptFunction:
        """Parse the result as ``tp`` whatever the annotation says."""
        return self._with(_return_type=tp)

    def with_return_prefix(self, prefix: str) -> PromptFunction:
        """Start the assistant's answer with ``prefix`` (prefill); the result includes it."""
        return self._with(_return_prefix=prefix)

    def with_stop_suffix_list(self, stops: list[str]) -> PromptFunction:
        return self._with(_stop_suffix_list=list(stops))

    def with_meta(self, holder: Any) -> PromptFunction:
        """Fill ``holder`` after the call with input_tokens_count, generated_tokens_count (summed over
        turns), time_cost (s), first_token_time (s), turns, finish_reason, reasoning_content:
        a ``byzerllm.MetaHolder`` gets them as its ``meta`` (read with ``get_meta()``), a dict is
        updated with them."""
        return self._with(_meta_holder=holder)

    def with_conversation(self, history: list[dict[str, Any]]) -> PromptFunction:
        """Put ``history`` (OpenAI messages) before the rendered prompt."""
        return self._with(_conversation=list(history))

    # --- rendering ---------------------------------------------------------------------
    def _arguments(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        if self._bound:
            args = (self._instance, *args)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._fn.__qualname__}(): {exc}") from None
        bound.apply_defaults()
        return bound

    def _values(self, bound: inspect.BoundArguments, body_result: Any) -> dict[str, Any]:
        values = dict(bound.arguments)
        for name, param in self._signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                values.update(values.pop(name, {}))
        if self._bound:
            values.pop(next(iter(self._signature.parameters)), None)
        if body_result is not None:
            if not isinstance(body_result, dict):
                raise InvalidRequestError(
                    f"the body of prompt function {self._fn.__qualname__!r} returned {type(body_result).__name__}; "
                    "a body returns a dict of template variables, or nothing",
                    param="body",
                )
            values.update(body_result)
        return values

    def _render(self, args: tuple, kwargs: dict):
        bound = self._arguments(args, kwargs)
        return self._template.render(self._values(bound, self._fn(*bound.args, **bound.kwargs)))

    async def _arender(self, args: tuple, kwargs: dict):
        bound = self._arguments(args, kwargs)
        result = self._fn(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return self._template.render(self._values(bound, result))

    def prompt(self, *args: Any, **kwargs: Any) -> str:
        """The rendered prompt, without calling a model (an awaitable for ``async def``)."""
        if self._is_async:

            async def rendered() -> str:
                return printable(*await self._arender(args, kwargs))

            return rendered()  # type: ignore[return-value]
        return printable(*self._render(args, kwargs))

    # --- calling -----------------------------------------------------------------------
    def _client(self) -> tuple[Any, str]:
        llm = self._llm
        if llm is None:
            raise InvalidRequestError(
                f"prompt function {self._fn.__qualname__!r} has no llm: pass @byzerllm.prompt(llm=...) "
                "(a client, a deployed model's name, or a callable like lambda self: self.llm) or call "
                ".with_llm(llm) before .run()",
                param="llm",
            )
        if callable(llm) and not hasattr(llm, "chat_oai"):
            llm = llm(self._instance) if self._bound else llm()
        if isinstance(llm, str):
            from ..client import ByzerLLM

            return ByzerLLM.from_default_model(llm), self._options.get("model") or llm
        if not hasattr(llm, "chat_oai"):
            raise InvalidRequestError(
                f"llm of {self._fn.__qualname__!r} is a {type(llm).__name__}; expected a ByzerLLM client or a "
                "deployed model's name",
                param="llm",
            )
        model = self._options.get("model") or llm.default_model_name
        if not model:
            raise InvalidRequestError(
                "no model given: setup_default_model_name(...) on the client, or .options({'model': ...})",
                param="model",
            )
        return llm, model

    def _messages(self, rendered) -> list[dict[str, Any]]:
        return [*self._conversation, {"role": "user", "content": to_content(*rendered)}]

    def _call(
        self, messages: list[dict[str, Any]], stops: list[str] = (), resample: bool = False, **extra: Any
    ) -> _Call:
        config = dict(self._options.get("llm_config", {}))
        if resample:
            config = resampled(config)
        all_stops = [*self._stop_suffix_list, *stops]
        if all_stops:
            config["stop"] = all_stops
        return _Call(messages, config, {**self._options.get("extra_request_params", {}), **extra})

    def _text_plan(self, messages: list[dict[str, Any]], **extra: Any) -> Generator[_Call, LLMResponse, str]:
        """The model's text; ``extra`` goes to ``_call`` (``response_format``, ``resample``...)."""
        prefix = self._return_prefix or ""
        if self._markers is None:
            if prefix:
                messages = [*messages, {"role": "assistant", "content": prefix}]
                extra["continue_final_message"] = True
            resp = yield self._call(messages, **extra)
            return prefix + resp.output
        start, end = self._markers
        if self._markers_template:
            instruction = "\n\n" + render_string(self._markers_template, RESPONSE_START=start, RESPONSE_END=end)
        else:
            instruction = f"\n\nWrite your whole answer between {start} and {end}, and end it with {end}."
        messages = [*messages[:-1], _append_text(messages[-1], instruction)]
        text = prefix
        for _ in range(self._max_turns):
            turn = [*messages, {"role": "assistant", "content": start + text}]
            resp = yield self._call(turn, stops=[end], continue_final_message=True, **extra)
            text += resp.output
            if resp.metadata.get("finish_reason") != "length":
                break
        return text.replace(start, "").replace(end, "")

    def _plan(self, messages: list[dict[str, Any]], meta: dict[str, Any]) -> Generator[_Call, LLMResponse, Any]:
        tp = self._return_type
        if _kind(tp) == "text":
            text = yield from self._text_plan(messages)
            return self._extractor(text) if self._extractor else text
        extra: dict[str, Any] = {}
        if "json_schema" in meta.get("support_response_format", ()):
            extra["response_format"] = response_format_for(tp)
        else:
            messages = [*messages[:-1], _append_text(messages[-1], format_instruction(tp))]
        text = yield from self._text_plan(messages, **extra)
        try:
            return parse_as(tp, self._extractor(text) if self._extractor else text)
        except OutputParseError as exc:
            if "response_format" in extra and not _has_json(text):
                # grammar-constrained JSON is incomplete only when cut off while the model repeated
                # itself: sample again rather than show the model its loop
                text = yield from self._text_plan(messages, resample=True, **extra)
            else:  # one repair-and-re-ask carrying the validation error
                retry = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": f"{exc}\nAnswer again with only the corrected JSON."},
                ]
                text = yield from self._text_plan(retry, **extra)
            return parse_as(tp, self._extractor(text) if self._extractor else text)

    def _record(self, responses: list[LLMResponse]) -> None:
        if self._meta_holder is None or not responses:
            return
        ms = [r.metadata for r in responses]
        meta = {
            "input_tokens_count": sum(m.get("input_tokens_count", 0) for m in ms),
            "generated_tokens_count": sum(m.get("generated_tokens_count", 0) for m in ms),
            "time_cost": sum(m.get("time_cost", 0.0) for m in ms),
            "first_token_time": ms[0].get("first_token_time"),
            "turns": len(ms),
            "finish_reason": ms[-1].get("finish_reason"),
            "reasoning_content": "".join(m.get("reasoning_content") or "" for m in ms),
        }
        if isinstance(self._meta_holder, dict):
            self._meta_holder.update(meta)
        else:  # a MetaHolder, or any object with a ``meta`` attribute as Byzer-LLM's
            self._meta_holder.meta = meta

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model; ``f.run(...)`` and ``f(...)`` are the same."""
        kind = _kind(self._return_type)
        if self._is_async:
            if kind == "astream":
                return _AsyncStream(self._astream(args, kwargs))
            return self._arun(args, kwargs)
        if kind == "astream":
            raise InvalidRequestError(
                f"{self._fn.__qualname__!r} returns an async iterator: declare it async def", param="return"
            )
        rendered = self._render(args, kwargs)
        client, model = self._client()
        if kind == "stream":
            return self._stream(client, model, self._messages(rendered))
        meta = client.get_meta(model=model) if kind == "typed" else {}
        responses: list[LLMResponse] = []
        try:
            return run_plan(self._plan(self._messages(rendered), meta), client, model, responses)
        finally:
            self._record(responses)

    __call__ = run

    async def _arun(self, args: tuple, kwargs: dict) -> Any:
        rendered = await self._arender(args, kwargs)
        client, model = self._client()
        kind = _kind(self._return_type)
        if kind == "stream":
            raise InvalidRequestError(
                f"{self._fn.__qualname__!r} is async def: annotate it AsyncIterator[str]", param="return"
            )
        meta = client.get_meta(model=model) if kind == "typed" else {}
        responses: list[LLMResponse] = []
        try:
            return await arun_plan(self._plan(self._messages(rendered), meta), client, model, responses)
        finally:
            self._record(responses)

    def _stream_call(self, messages: list[dict[str, Any]]) -> tuple[_Call, str]:
        if self._markers is not None:
            raise InvalidRequestError(
                "with_response_markers works with str and typed results, not streams", param="with_response_markers"
            )
        prefix = self._return_prefix or ""
        if prefix:
            return self._call(
                [*messages, {"role": "assistant", "content": prefix}], continue_final_message=True
            ), prefix
        return self._call(messages), ""

    def _stream(self, client: Any, model: str, messages: list[dict[str, Any]]) -> Iterator[str]:
        call, prefix = self._stream_call(messages)
        if prefix:
            yield prefix
        start, meta = time.perf_counter(), None
        for delta, meta in client.stream_chat_oai(
            call.messages, model=model, llm_config=call.llm_config, extra_request_params=call.extra, delta_mode=True
        ):
            if delta:
                yield delta
        self._record_stream(meta, start)

    async def _astream(self, args: tuple, kwargs: dict) -> AsyncIterator[str]:
        rendered = await self._arender(args, kwargs)
        client, model = self._client()
        call, prefix = self._stream_call(self._messages(rendered))
        if prefix:
            yield prefix
        start, meta = time.perf_counter(), None
        async for delta, meta in client.async_stream_chat_oai(
            call.messages, model=model, llm_config=call.llm_config, extra_request_params=call.extra, delta_mode=True
        ):
            if delta:
                yield delta
        self._record_stream(meta, start)

    def _record_stream(self, meta: Any, start: float) -> None:
        if meta is not None:
            self._record([LLMResponse("", {}, {**meta.to_dict(), "time_cost": time.perf_counter() - start})])


class _AsyncStream:
    """An async iterator that can also be awaited (``await f()`` gives the iterator itself)."""

    def __init__(self, agen: AsyncIterator[str]) -> None:
        self._agen = agen

    def __aiter__(self) -> AsyncIterator[str]:
        return self._agen

    def __await__(self):
        async def itself():
            return self._agen

        return itself().__await__()


def _append_text(message: dict[str, Any], text: str) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, list):
        return {**message, "content": [*content, {"type": "text", "text": text.strip()}]}
    return {**message, "content": content + text}


def prompt(
    llm: Any = None,
    render: str = "jinja2",
    check_result: bool = False,
    options: dict[str, Any] | None = None,
    strict: bool = False,
) -> Any:
    """Decorate a function whose docstring is a Jinja2 template over its arguments.

    ``llm``: a client (``ByzerLLM``), a deployed model's name, or a callable returning one (for
    methods: ``lambda self: self.llm``); it can also be given per call with ``.with_llm``.
    ``render``: only ``"jinja2"`` (the Byzer-LLM default). ``check_result``: accepted for
    Byzer-LLM's code; a typed result that cannot be parsed raises ``OutputParseError`` here rather
    than being None. ``options``: as ``.options(...)``. A template variable with no value renders
    empty, as in Byzer-LLM; ``strict=True`` makes it an ``InvalidRequestError`` naming it.
    ``@byzerllm.prompt`` without parentheses works too. See ``PromptFunction`` for the chain
    methods.
    """
    if render not in ("jinja2", "jinja"):
        raise InvalidRequestError(f"render {render!r} is unknown; accepted: jinja2", param="render")
    if inspect.isfunction(llm) and llm.__name__ != "<lambda>" and llm.__doc__ and options is None:
        return PromptFunction(llm)  # used bare: @byzerllm.prompt

    def decorate(fn: Callable) -> PromptFunction:
        return PromptFunction(fn, llm=llm, options=options, strict=strict)

    return decorate
