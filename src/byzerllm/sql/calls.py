"""What the SQL functions do to one row, for every engine (DuckDB, Spark).

Byzer-LLM's SQL functions (guide 004 section 3, README 001 "SQL 支持") pass JSON text between them:

- ``llm_param(map(...))`` -> a request: the map's keys as given (``instruction``, ``system_msg``,
  ``user_role``, ``assistant_role``, generation keys such as ``max_length`` and ``temperature``);
- ``<deployment>(request)`` -> a response: ``{"output", "input", "metadata"}`` where ``input`` is
  the request with its ``history``, or ``{"error", "input"}`` for a row that failed (bad input, a
  model error after the client's retries); a NULL request gives a NULL response;
- ``llm_result(response)`` -> the text (NULL for a failed row), ``llm_error(response)`` -> the
  failure as ``"<ErrorType>: <message>"`` (NULL for a row that succeeded);
- ``llm_stack(response, request)`` -> the request of the next turn: the earlier turns (the previous
  request's history, its instruction and the model's answer) become its ``history``, and its
  ``system_msg`` / roles carry over unless it sets its own;
- ``llm_prompt(template, array(...))`` -> the template with ``{0}``, ``{1}``... replaced by the values.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import ByzerLLMError, InvalidRequestError

# request keys that are not generation parameters; every other key goes to llm_config
TEXT_KEYS = ("instruction", "system_msg", "user_role", "assistant_role")
HISTORY = "history"
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def llm_param(mapping: dict[str, Any] | Sequence[tuple[str, Any]] | None) -> str | None:
    """The request JSON of one row from a SQL map (a dict, or the ``(key, value)`` pairs some engines
    give); NULL for a NULL map."""
    if mapping is None:
        return None
    items = mapping.items() if isinstance(mapping, dict) else mapping
    return json.dumps({str(k): v for k, v in items}, ensure_ascii=False)


def llm_prompt(template: str | None, values: Sequence[Any] | None) -> str | None:
    """``template`` with each ``{i}`` replaced by ``values[i]`` (README 001's ``llm_prompt``); other
    braces are left alone. Raises ``ValueError`` for a placeholder without a value."""
    if template is None:
        return None
    values = list(values or [])

    def value(m: re.Match) -> str:
        i = int(m[1])
        if i >= len(values):
            raise ValueError(f"llm_prompt: the template uses {{{i}}} but only {len(values)} values were given")
        return "" if values[i] is None else str(values[i])

    return _PLACEHOLDER.sub(value, template)


def _load(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{what} must be the JSON object that {_MAKER[what]} returns, got {text!r:.80}")
    return data


_MAKER = {"request": "llm_param", "response": "a model function"}


def llm_result(response: str | None) -> str | None:
    """The answer text of a response; NULL for a failed row or a NULL response."""
    data = _load(response, "response")
    return None if data is None or "error" in data else data.get("output")


def llm_error(response: str | None) -> str | None:
    """``"<ErrorType>: <message>"`` of a failed row; NULL otherwise."""
    data = _load(response, "response")
    if data is None or "error" not in data:
        return None
    err = data["error"]
    return f"{err.get('type')}: {err.get('message')}"


def llm_stack(response: str | None, request: str | None) -> str | None:
    """The request of the next turn of a conversation (see the module docstring). A failed earlier
    turn makes the new request fail too (its response carries the earlier error), so no row is
    silently answered without its history."""
    new = _load(request, "request")
    old = _load(response, "response")
    if new is None or old is None:
        return None if new is None else json.dumps(new, ensure_ascii=False)
    if "error" in old:
        new["error"] = {"type": "PreviousTurnError", "message": llm_error(response)}
        return json.dumps(new, ensure_ascii=False)
    earlier = old.get("input") or {}
    history = list(earlier.get(HISTORY) or [])
    history += [
        {"role": "user", "content": earlier.get("instruction", "")},
        {"role": "assistant", "content": old.get("output", "")},
    ]
    for key in ("system_msg", "user_role", "assistant_role"):
        if key in earlier and key not in new:
            new[key] = earlier[key]
    new[HISTORY] = history + list(new.get(HISTORY) or [])
    return json.dumps(new, ensure_ascii=False)


def chat_arguments(request: dict[str, Any]) -> dict[str, Any]:
    """``chat_oai`` keyword arguments for a request: ``conversations`` (system message, history, the
    instruction), ``llm_config`` (every other key) and ``role_mapping`` (``user_role`` /
    ``assistant_role``, for models prompted without a chat template). Raises ``InvalidRequestError``
    naming a bad key."""
    if "error" in request:
        err = request["error"]
        raise InvalidRequestError(f"{err.get('message')}", param="history")
    instruction = request.get("instruction")
    if not isinstance(instruction, str) or not instruction:
        raise InvalidRequestError("llm_param needs a non-empty 'instruction'", param="instruction")
    messages: list[dict[str, Any]] = []
    if request.get("system_msg"):
        messages.append({"role": "system", "content": str(request["system_msg"])})
    history = request.get(HISTORY) or []
    if not isinstance(history, list) or not all(isinstance(m, dict) and "role" in m for m in history):
        raise InvalidRequestError("history must be a list of {role, content} messages", param=HISTORY)
    messages += history
    messages.append({"role": "user", "content": instruction})
    roles = {k: str(request[k]) for k in ("user_role", "assistant_role") if request.get(k)}
    config = {k: v for k, v in request.items() if k not in (*TEXT_KEYS, HISTORY)}
    return {"conversations": messages, "llm_config": config, "role_mapping": roles or None}


def failure(exc: BaseException, request: Any) -> str:
    """The response JSON of a failed row."""
    err = {"type": type(exc).__name__, "message": str(exc), "param": getattr(exc, "param", None)}
    return json.dumps({"error": err, "input": request}, ensure_ascii=False)


# the errors that fail one row; anything else is a programming error and fails the query
ROW_ERRORS = (ByzerLLMError, ValueError, TypeError)


class Caller:
    """Runs the model calls of a batch of rows concurrently on one event loop thread of its own (so
    engines that call from any thread, or from inside a running loop, share one loop)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.rows_done = 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="byzerllm-sql", daemon=True).start()
                self._loop = loop
            return self._loop

    def map(self, call: Callable[[Any], Awaitable[Any]], rows: Sequence[Any], gate: asyncio.Semaphore) -> list[Any]:
        """``[await call(row) for row in rows]``, in order, as ``gate`` lets them through (one gate
        per function, shared by the batches an engine runs at once from several threads)."""

        async def run() -> list[Any]:
            async def one(row: Any) -> Any:
                async with gate:
                    out = await call(row)
                    self.rows_done += 1
                    return out

            return await asyncio.gather(*(one(r) for r in rows))

        future: Future = asyncio.run_coroutine_threadsafe(run(), self._running_loop())
        return future.result()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


class ModelFunction:
    """The SQL function of one chat deployment: one ``async_chat_oai`` per row, at most
    ``concurrency`` rows in flight, across the batches an engine runs at once.

    With ``cache``, answers to requests that set ``temperature`` 0 are kept (by deployment and
    request) for the life of the registration and reused. With ``response_class`` (a pydantic model
    or a JSON schema) each row asks for that schema (grammar-constrained where the backend allows)
    and ``typed_batch`` gives ``{"value": <object or NULL>, "error": <text or NULL>}`` per row.
    """

    def __init__(
        self,
        llm: Any,
        model: str,
        caller: Caller,
        concurrency: int,
        cache: bool = False,
        response_class: Any = None,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise InvalidRequestError(f"concurrency must be an integer >= 1, got {concurrency!r}", param="concurrency")
        self.llm, self.model, self.caller, self.response_class = llm, model, caller, response_class
        self.concurrency = concurrency
        self._gate = asyncio.Semaphore(concurrency)
        self._cache: dict[str, Any] | None = {} if cache else None
        self.kind = None
        if response_class is not None:
            from .schema import struct_of

            self.kind = struct_of(response_class)

    def _key(self, request: dict[str, Any]) -> str | None:
        if self._cache is None:
            return None
        try:
            if float(request.get("temperature", "nan")) != 0:
                return None
        except (TypeError, ValueError):
            return None
        return json.dumps(request, sort_keys=True, ensure_ascii=False)

    async def _ask(self, text: str) -> tuple[Any, dict[str, Any]]:
        """The answer to one request (the text, or the object of a typed function) and the request."""
        request = _load(text, "request")
        key = self._key(request)
        if key is not None and key in self._cache:
            return self._cache[key], request
        args = chat_arguments(request)
        if self.response_class is None:
            [r] = await self.llm.async_chat_oai(model=self.model, **args)
            out: Any = {"output": r.output, "metadata": r.metadata}
        else:
            [r] = await self.llm.async_chat_oai(model=self.model, response_class=self.response_class, **args)
            if r.value is None:
                raise ValueError(f"the answer does not match the schema: {r.metadata.get('reason')}")
            value = r.value.model_dump(mode="json") if hasattr(r.value, "model_dump") else r.value
            out = {"value": value}
        if key is not None:
            self._cache[key] = out
        return out, request

    async def answer(self, text: str | None) -> str | None:
        """The response JSON of one row (see the module docstring)."""
        if text is None:
            return None
        try:
            out, request = await self._ask(text)
        except ROW_ERRORS as exc:
            return failure(exc, _safe_load(text))
        return json.dumps(
            {"output": out["output"], "input": request, "metadata": out["metadata"]}, ensure_ascii=False, default=str
        )

    async def answer_typed(self, text: str | None) -> dict[str, Any] | None:
        if text is None:
            return None
        from .schema import conform

        try:
            out, _ = await self._ask(text)
        except ROW_ERRORS as exc:
            return {"value": None, "error": f"{type(exc).__name__}: {exc}"}
        return {"value": conform(out["value"], self.kind), "error": None}

    def batch(self, texts: Sequence[str | None]) -> list[str | None]:
        return self.caller.map(self.answer, texts, self._gate)

    def typed_batch(self, texts: Sequence[str | None]) -> list[dict[str, Any] | None]:
        return self.caller.map(self.answer_typed, texts, self._gate)


def _safe_load(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return text
