"""``@byzerllm.prompt``: a function whose docstring is a Jinja2 template becomes a typed LLM call.

The return annotation picks the result: ``str``; a pydantic model, ``dict``, ``list[...]`` or any
type pydantic validates (JSON; by a grammar where the backend supports ``response_format``,
otherwise parsed from the text; an answer that does not parse is asked for once more by the rule
of ``byzerllm.structured.repair``); ``Generator[str, None, None]`` / ``Iterator[str]`` (text
deltas as generated).

Type checkers see the decorated signature: ``def f(x: int) -> Foo`` becomes a
``PromptFunction[[int], Foo]``, whose call takes an ``int`` and returns a ``Foo``; ``async def``
becomes an ``AsyncPromptFunction[[int], Foo]``, whose call returns an awaitable of ``Foo`` (with
``-> AsyncIterator[str]``, an ``AsyncStream[str]``: iterate it, or await it for the iterator).
Chain methods return the same type; ``with_return_type(T)`` one whose result is ``T``.

The logic of one call is written once, as a plan that yields the chat requests it needs and
receives their responses; ``PromptFunction`` runs it with the sync driver, ``AsyncPromptFunction``
with the async one.
"""

from __future__ import annotations

import collections.abc
import copy
import functools
import inspect
import time
import typing
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from ..errors import InvalidRequestError, OutputParseError
from ..structured import format_instruction, parse_as, response_format_for
from ..structured.plan import Call as _Call
from ..structured.plan import arun_plan, run_plan
from ..structured.repair import Answer, parsed_plan
from ..types import LLMResponse
from .template import PromptTemplate, printable, render_string, to_content

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R", covariant=True)
T = TypeVar("T")

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


def _unwrapped(fn: Any) -> Any:
    return fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn


def _is_async(fn: Any) -> bool:
    fn = _unwrapped(fn)
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


class BasePromptFunction(Generic[P, R]):
    """What ``PromptFunction`` and ``AsyncPromptFunction`` share: the template, the settings of
    the chain methods, and the plan of one call. Chain methods return a modified copy of the
    same type; the original is unchanged.

    ``P`` is the decorated function's parameters, ``R`` its return annotation (what a call
    gives). Raises ``TypeError`` when ``fn`` is ``async def`` and the class is not
    ``AsyncPromptFunction``, or the other way round (``@byzerllm.prompt`` picks the class).
    """

    _async: ClassVar[bool] = False

    def __init__(
        self,
        fn: Callable[..., Any] | staticmethod[..., Any] | classmethod[Any, ..., Any],
        llm: Any = None,
        options: dict[str, Any] | None = None,
        strict: bool = False,
    ) -> None:
        if _is_async(fn) != self._async:
            raise TypeError(
                f"{_unwrapped(fn).__qualname__} is {'' if _is_async(fn) else 'not '}async def: wrap it in "
                f"{'AsyncPromptFunction' if _is_async(fn) else 'PromptFunction'} (@byzerllm.prompt picks the class)"
            )
        self._binding: str | None = None
        if isinstance(fn, (staticmethod, classmethod)):
            self._binding = "class" if isinstance(fn, classmethod) else "static"
            fn = fn.__func__
        self._fn: Callable[..., Any] = fn
        self._signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable forward references: fall back to the raw annotation
            hints = dict(getattr(fn, "__annotations__", {}))
        self._return_type: Any = hints.get("return", str)
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
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]  # an instance, not a function

    # --- binding: functions, methods, classmethods, staticmethods -----------------------
    # Declared once for both subclasses, each overload for one of them by its ``self`` (mypy asks
    # a ``self`` annotation to be a supertype of the class, hence the ignores). Type checkers see
    # ``P`` without its first parameter on an instance, and any parameters on the class (where a
    # classmethod is bound too).
    @overload
    def __get__(  # type: ignore[misc]
        self: PromptFunction[P, T], instance: None, owner: type | None = None
    ) -> PromptFunction[..., T]: ...
    @overload
    def __get__(  # type: ignore[misc]
        self: AsyncPromptFunction[P, T], instance: None, owner: type | None = None
    ) -> AsyncPromptFunction[..., T]: ...
    @overload
    def __get__(  # type: ignore[misc]
        self: PromptFunction[Concatenate[Any, Q], T], instance: object, owner: type | None = None
    ) -> PromptFunction[Q, T]: ...
    @overload
    def __get__(  # type: ignore[misc]
        self: AsyncPromptFunction[Concatenate[Any, Q], T], instance: object, owner: type | None = None
    ) -> AsyncPromptFunction[Q, T]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """A copy bound to the instance (the class for classmethods), else itself."""
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
    def _with(self, **changes: Any) -> Self:
        clone = copy.copy(self)
        for key, value in changes.items():
            setattr(clone, key, value)
        return clone

    def with_llm(self, llm: Any) -> Self:
        """Use ``llm`` (a client, a deployed model's name, or a callable returning one)."""
        return self._with(_llm=llm)

    # one overload per subclass by ``self``, as for ``__get__``
    @overload
    def with_return_type(self: PromptFunction[P, Any], tp: type[T]) -> PromptFunction[P, T]: ...  # type: ignore[misc]
    @overload
    def with_return_type(self: AsyncPromptFunction[P, Any], tp: type[T]) -> AsyncPromptFunction[P, T]: ...  # type: ignore[misc]
    @overload
    def with_return_type(self: PromptFunction[P, Any], tp: Any) -> PromptFunction[P, Any]: ...  # type: ignore[misc]
    @overload
    def with_return_type(self, tp: Any) -> Any: ...
    def with_return_type(self, tp: Any) -> Any:
        """Parse the result as ``tp`` whatever the annotation says. Type checkers see the result as
        ``tp`` when it is a class or an alias like ``list[int]``; for other forms (unions,
        ``Literal``) as ``Any`` (and an ``AsyncPromptFunction`` becomes ``Any``)."""
        return self._with(_return_type=tp)

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

    def options(self, options: dict[str, Any]) -> Self:
        """``{"llm_config": {...}, "model": name, "extra_request_params": {...}}`` for the call.
        Raises ``InvalidRequestError`` naming an unknown key."""
        return self._with(_options=self._checked_options(options))

    def with_extractor(self, extractor: Callable[[str], Any]) -> Self:
        """Post-process the model's text; for a typed result it runs before parsing."""
        return self._with(_extractor=extractor)

    def with_response_markers(
        self, response_markers: tuple[str, str] | list[str] | None = None, response_markers_template: str | None = None
    ) -> Self:
        """Long output: ask for the answer between two markers and keep asking the model to continue
        (assistant prefill) until the end marker, an end of turn, or ``with_max_turns`` turns.
        The markers are removed from the result. ``response_markers_template`` replaces the
        instruction added to the prompt: Jinja2 text over ``RESPONSE_START`` and ``RESPONSE_END``.
        Raises ``InvalidRequestError`` unless ``response_markers`` is None or two strings."""
        markers = response_markers or DEFAULT_MARKERS
        if len(markers) != 2 or not all(isinstance(m, str) and m for m in markers):
            raise InvalidRequestError("response_markers must be two non-empty strings", param="response_markers")
        return self._with(_markers=tuple(markers), _markers_template=response_markers_template)

    def with_max_turns(self, n: int) -> Self:
        """At most ``n`` turns (requests) for one answer between response markers (default 10).
        Raises ``InvalidRequestError`` unless ``n`` is an integer >= 1."""
        if not isinstance(n, int) or n < 1:
            raise InvalidRequestError(f"max turns must be an integer >= 1, got {n!r}", param="max_turns")
        return self._with(_max_turns=n)

    def with_return_prefix(self, prefix: str) -> Self:
        """Start the assistant's answer with ``prefix`` (prefill); the result includes it."""
        return self._with(_return_prefix=prefix)

    def with_stop_suffix_list(self, stops: list[str]) -> Self:
        """Stop strings for the call, before those of the response markers."""
        return self._with(_stop_suffix_list=list(stops))

    def with_meta(self, holder: Any) -> Self:
        """Fill ``holder`` after the call with input_tokens_count, generated_tokens_count (summed over
        turns), time_cost (s), first_token_time (s), turns, finish_reason, reasoning_content:
        a ``byzerllm.MetaHolder`` gets them as its ``meta`` (read with ``get_meta()``), a dict is
        updated with them."""
        return self._with(_meta_holder=holder)

    def with_conversation(self, history: list[dict[str, Any]]) -> Self:
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

    def _messages(self, rendered: tuple[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [*self._conversation, {"role": "user", "content": to_content(*rendered)}]

    def _config(self) -> dict[str, Any]:
        return dict(self._options.get("llm_config", {}))

    def _call(
        self,
        messages: list[dict[str, Any]],
        llm_config: dict[str, Any],
        stops: tuple[str, ...] | list[str] = (),
        **extra: Any,
    ) -> _Call:
        config = dict(llm_config)
        all_stops = [*self._stop_suffix_list, *stops]
        if all_stops:
            config["stop"] = all_stops
        return _Call(messages, config, {**self._options.get("extra_request_params", {}), **extra})

    def _extracted(self, text: str) -> Any:
        return self._extractor(text) if self._extractor else text

    def _text_plan(
        self, messages: list[dict[str, Any]], llm_config: dict[str, Any], **extra: Any
    ) -> Generator[_Call, LLMResponse, Answer]:
        """The model's answer (over several turns with response markers); ``extra`` goes to
        ``_call`` (``response_format``...)."""
        prefix = self._return_prefix or ""
        if self._markers is None:
            if prefix:
                messages = [*messages, {"role": "assistant", "content": prefix}]
                extra["continue_final_message"] = True
            resp = yield self._call(messages, llm_config, **extra)
            return Answer.of(resp, prefix + resp.output)
        start, end = self._markers
        if self._markers_template:
            instruction = "\n\n" + render_string(self._markers_template, RESPONSE_START=start, RESPONSE_END=end)
        else:
            instruction = f"\n\nWrite your whole answer between {start} and {end}, and end it with {end}."
        messages = [*messages[:-1], _append_text(messages[-1], instruction)]
        text, cut_off = prefix, False
        for _ in range(self._max_turns):
            turn = [*messages, {"role": "assistant", "content": start + text}]
            resp = yield self._call(turn, llm_config, stops=[end], continue_final_message=True, **extra)
            text += resp.output
            cut_off = resp.metadata.get("finish_reason") == "length"
            if not cut_off:
                break
        return Answer(text.replace(start, "").replace(end, ""), cut_off)

    def _plan(self, messages: list[dict[str, Any]], meta: dict[str, Any]) -> Generator[_Call, LLMResponse, Any]:
        """Text, or JSON parsed as the return type by ``structured.repair.parsed_plan``; raises
        ``OutputParseError`` (its ``output`` is the last answer) when the second answer fails too."""
        tp, config = self._return_type, self._config()
        if _kind(tp) == "text":
            answer = yield from self._text_plan(messages, config)
            return self._extracted(answer.text)
        extra: dict[str, Any] = {}
        constrained = "json_schema" in meta.get("support_response_format", ())
        if constrained:
            extra["response_format"] = response_format_for(tp)
        else:
            messages = [*messages[:-1], _append_text(messages[-1], format_instruction(tp))]
        value, text, reason = yield from parsed_plan(
            lambda turn, llm_config: self._text_plan(turn, llm_config, **extra),
            messages,
            config,
            lambda text: parse_as(tp, self._extracted(text)),
            constrained,
        )
        if reason:
            raise OutputParseError(reason, output=text)
        return value

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

    def _stream_call(self, messages: list[dict[str, Any]]) -> tuple[_Call, str]:
        if self._markers is not None:
            raise InvalidRequestError(
                "with_response_markers works with str and typed results, not streams", param="with_response_markers"
            )
        prefix = self._return_prefix or ""
        if prefix:
            messages = [*messages, {"role": "assistant", "content": prefix}]
            return self._call(messages, self._config(), continue_final_message=True), prefix
        return self._call(messages, self._config()), ""

    def _record_stream(self, meta: Any, start: float) -> None:
        if meta is not None:
            self._record([LLMResponse("", {}, {**meta.to_dict(), "time_cost": time.perf_counter() - start})])


class PromptFunction(BasePromptFunction[P, R]):
    """``@byzerllm.prompt`` on a ``def``: ``f(...)`` (or ``f.run(...)``) renders the docstring
    with the arguments, asks the model and returns ``R``: the text, the parsed value, or a
    generator of text deltas. Raises ``InvalidRequestError`` (no llm, a bad template variable,
    ``-> AsyncIterator`` on a ``def``), ``OutputParseError`` (a typed answer that failed twice) and
    what the client raises."""

    def _render(self, args: tuple, kwargs: dict) -> tuple[str, list[dict[str, Any]]]:
        bound = self._arguments(args, kwargs)
        return self._template.render(self._values(bound, self._fn(*bound.args, **bound.kwargs)))

    def prompt(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The rendered prompt, without calling a model."""
        return printable(*self._render(args, kwargs))

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the model; ``f.run(...)`` and ``f(...)`` are the same."""
        kind = _kind(self._return_type)
        if kind == "astream":
            raise InvalidRequestError(
                f"{self._fn.__qualname__!r} returns an async iterator: declare it async def", param="return"
            )
        rendered = self._render(args, kwargs)
        client, model = self._client()
        if kind == "stream":
            return self._stream(client, model, self._messages(rendered))  # type: ignore[return-value]
        meta = client.get_meta(model=model) if kind == "typed" else {}
        responses: list[LLMResponse] = []
        try:
            return run_plan(self._plan(self._messages(rendered), meta), client, model, responses)
        finally:
            self._record(responses)

    __call__ = run

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


class AsyncPromptFunction(BasePromptFunction[P, R]):
    """``@byzerllm.prompt`` on an ``async def``: ``f(...)`` gives an awaitable of ``R``; with
    ``-> AsyncIterator[str]`` an ``AsyncStream[str]`` of text deltas. The errors are those of
    ``PromptFunction`` (``-> Iterator[str]`` here is an ``InvalidRequestError``), raised when
    awaited or iterated."""

    _async = True

    async def _render(self, args: tuple, kwargs: dict) -> tuple[str, list[dict[str, Any]]]:
        bound = self._arguments(args, kwargs)
        result = self._fn(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return self._template.render(self._values(bound, result))

    async def prompt(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The rendered prompt, without calling a model."""
        return printable(*await self._render(args, kwargs))

    @overload
    def run(  # type: ignore[overload-overlap]
        self: AsyncPromptFunction[P, AsyncIterable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> AsyncStream[T]: ...
    @overload
    def run(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model; ``f.run(...)`` and ``f(...)`` are the same."""
        if _kind(self._return_type) == "astream":
            return AsyncStream(self._astream(args, kwargs))
        return self._arun(args, kwargs)

    __call__ = run

    async def _arun(self, args: tuple, kwargs: dict) -> Any:
        rendered = await self._render(args, kwargs)
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

    async def _astream(self, args: tuple, kwargs: dict) -> AsyncIterator[str]:
        rendered = await self._render(args, kwargs)
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


class AsyncStream(Generic[T]):
    """What an ``async def ... -> AsyncIterator[str]`` prompt function returns: an async iterator
    of text deltas that can also be awaited (``await f()`` gives the iterator itself)."""

    def __init__(self, agen: AsyncIterator[T]) -> None:
        self._agen = agen

    def __aiter__(self) -> AsyncIterator[T]:
        return self._agen

    def __await__(self) -> Generator[Any, None, AsyncIterator[T]]:
        async def itself() -> AsyncIterator[T]:
            return self._agen

        return itself().__await__()


def _append_text(message: dict[str, Any], text: str) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, list):
        return {**message, "content": [*content, {"type": "text", "text": text.strip()}]}
    return {**message, "content": content + text}


class PromptDecorator(Protocol):
    """What ``prompt(...)`` returns: applied to a function, the prompt function of its signature.

    The first overload is there for functions whose result is ``Any`` (unannotated): it makes
    the match ambiguous, and type checkers then give the prompt function ``Any``."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, AsyncIterator[T]]], /
    ) -> AsyncPromptFunction[P, AsyncIterator[T]]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncPromptFunction[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> PromptFunction[P, T]: ...


def _prompt_function(
    fn: Any, llm: Any = None, options: dict[str, Any] | None = None, strict: bool = False
) -> BasePromptFunction[..., Any]:
    cls = AsyncPromptFunction if _is_async(fn) else PromptFunction
    return cls(fn, llm=llm, options=options, strict=strict)


@overload
def prompt(  # type: ignore[overload-overlap]
    llm: Callable[P, Coroutine[Any, Any, AsyncIterator[T]]], /
) -> AsyncPromptFunction[P, AsyncIterator[T]]: ...
@overload
def prompt(llm: Callable[P, Coroutine[Any, Any, T]], /) -> AsyncPromptFunction[P, T]: ...  # type: ignore[overload-overlap]
@overload
def prompt(llm: Callable[P, T], /) -> PromptFunction[P, T]: ...
@overload
def prompt(
    llm: Any = ...,
    render: str = ...,
    check_result: bool = ...,
    options: dict[str, Any] | None = ...,
    strict: bool = ...,
) -> PromptDecorator: ...
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
    ``@byzerllm.prompt`` without parentheses works too.

    Returns a ``PromptDecorator``: ``def f(x: int) -> Foo`` decorated is a
    ``PromptFunction[[int], Foo]``, ``async def`` an ``AsyncPromptFunction[[int], Foo]`` (see them
    for the chain methods). Raises ``InvalidRequestError`` for another ``render``, or a docstring
    that is not a valid template.
    """
    if render not in ("jinja2", "jinja"):
        raise InvalidRequestError(f"render {render!r} is unknown; accepted: jinja2", param="render")
    if inspect.isfunction(llm) and llm.__name__ != "<lambda>" and llm.__doc__ and options is None:
        return _prompt_function(llm)  # used bare: @byzerllm.prompt

    def decorate(fn: Any) -> BasePromptFunction[..., Any]:
        return _prompt_function(fn, llm=llm, options=options, strict=strict)

    return decorate
