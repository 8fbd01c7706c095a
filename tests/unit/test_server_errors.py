"""Status mapping of the server, with the client replaced at its boundary (no model needed), and
the fakes of that boundary checked against the ``ChatClient`` protocol the server depends on."""

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import pytest
from fastapi.testclient import TestClient

import byzerllm
from byzerllm.errors import DeploymentStartingError, QueueFullError, WorkerDiedError
from byzerllm.server import create_app
from byzerllm.server.chat_client import ChatClient
from byzerllm.types import LLMResponse, SingleOutputMeta


class FailingLLM:
    """A ``ChatClient`` with one deployment ``m`` whose model calls fail with the error given, after
    ``delay`` seconds; ``calls`` names the model calls made."""

    def __init__(self, error: Exception | None = None, delay: float = 0.0) -> None:
        self.error, self.delay = error, delay
        self.calls: list[str] = []

    async def _fail(self, call: str) -> NoReturn:
        self.calls.append(call)
        await asyncio.sleep(self.delay)
        raise self.error

    def list_deployments(self) -> list[str]:
        return ["m"]

    def deployment_info(self, udf_name: str) -> dict[str, Any]:
        return {"spec": {"created_at": 0}, "state": "running", "meta": {"model_type": "chat"}}

    def get_meta(self, model: str) -> dict[str, Any]:
        return {"max_model_len": 4096}

    async def async_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        *,
        model: str,
        llm_config: dict[str, Any],
        extra_request_params: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> list[Any]:
        return await self.answer(conversations)

    async def answer(self, conversations: list[dict[str, Any]]) -> list[Any]:
        """What every chat call answers: here, the error."""
        await self._fail("async_chat_oai")

    async def async_stream_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        *,
        model: str,
        llm_config: dict[str, Any],
        delta_mode: bool,
        extra_request_params: dict[str, Any] | None,
    ) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
        await self._fail("async_stream_chat_oai")
        yield "", SingleOutputMeta()  # an async generator, as the client's

    def stream_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        *,
        model: str,
        llm_config: dict[str, Any],
        delta_mode: bool,
        tools: list[dict[str, Any]],
        tool_choice: Any,
    ) -> Iterator[tuple[str, SingleOutputMeta]]:
        self.calls.append("stream_chat_oai")
        raise self.error

    async def async_completion(
        self, prompt: str, *, model: str, llm_config: dict[str, Any], extra_request_params: dict[str, Any] | None
    ) -> LLMResponse:
        await self._fail("async_completion")

    async def async_stream_completion(
        self, prompt: str, *, model: str, llm_config: dict[str, Any], extra_request_params: dict[str, Any] | None
    ) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
        await self._fail("async_stream_completion")
        yield "", SingleOutputMeta()  # an async generator, as the client's

    async def async_emb(self, model: str, request: list[str]) -> list[LLMResponse]:
        await self._fail("async_emb")

    async def async_emb_rerank(self, model: str, sentence_pairs: list[list[str]]) -> list[LLMResponse]:
        await self._fail("async_emb_rerank")

    async def async_run_task(self, task: str, request: Any, model: str | None = None) -> Any:
        await self._fail(f"async_run_task:{task}")


def post(app, **body):
    with TestClient(app) as http:
        return http.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
        )


@pytest.mark.parametrize(
    "error,status,kind",
    [
        (DeploymentStartingError("deployment 'm' is starting"), 503, "service_unavailable"),
        (QueueFullError("busy"), 429, "rate_limit_error"),
        (WorkerDiedError("died"), 503, "service_unavailable"),
    ],
)
def test_errors_map_to_their_status(error, status, kind):
    r = post(create_app(FailingLLM(error)))
    assert r.status_code == status
    assert r.json() == {"error": {"message": str(error), "type": kind, "param": None, "code": None}}


def test_upstream_timeout_is_504():
    r = post(create_app(FailingLLM(RuntimeError("never"), delay=5), request_timeout=0.2))
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"


def test_api_keys_are_required_and_compared_exactly():
    app = create_app(FailingLLM(QueueFullError("x")), api_keys=["k1", "k2"])
    with TestClient(app) as http:
        assert http.get("/v1/models").status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer k3"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Basic k1"}).status_code == 401
        assert http.get("/health").status_code == 200


def test_validation_errors_are_400_naming_the_field():
    r = post(create_app(FailingLLM()), top_p=3)
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_p"
    r = post(create_app(FailingLLM()), messages=[])
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


class RaisingBackendLLM(FailingLLM):
    """The real client path down to a worker whose engine raises with the prompt in its message."""

    async def answer(self, conversations: list[dict[str, Any]]) -> list[Any]:
        from byzerllm.params import build_chat_request
        from byzerllm.runtime.worker import Worker

        worker = Worker.__new__(Worker)  # the real worker around an engine that fails
        worker.init_error, worker._lock = None, contextlib.nullcontext()
        worker._cancelled, worker._active = set(), set()
        worker.backend = ExplodingBackend()
        return [worker.chat(build_chat_request(conversations))]


class ExplodingBackend:
    name = "exploding"

    def check_request(self, request):
        pass

    def chat(self, request, cancelled):
        raise ValueError(f"cannot encode {request.messages[0]['content']!r} in /srv/engine/core.py")


def test_error_bodies_carry_no_traceback_path_or_prompt():
    r = post(create_app(RaisingBackendLLM()), messages=[{"role": "user", "content": "my private prompt"}])
    body = json.dumps(r.json())
    assert r.status_code == 500 and "ValueError" in body
    assert "private prompt" not in body and "/srv/engine" not in body and "Traceback" not in body
    raw = '{"model": "m", "messages": [{"role": "user", "content": "my private \\ud800 prompt"}]}'
    with TestClient(create_app(RaisingBackendLLM())) as http:
        r = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "private" not in r.text and "surrogate" in r.json()["error"]["message"]


def test_a_body_without_content_length_is_refused_at_the_size_limit():
    llm = FailingLLM(QueueFullError("x"))

    def chunks():  # a chunked body: no Content-Length
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    with TestClient(create_app(llm, max_body_bytes=10_000)) as http:
        r = http.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "larger than 10000 bytes" in r.json()["error"]["message"]
        small = http.post(
            "/v1/chat/completions",
            content=iter([b'{"model": "m", "messages": []}']),
            headers={"Content-Type": "application/json"},
        )
        assert small.status_code == 400
    assert llm.calls == []


def protocol_mismatches(cls: type, protocol: type = ChatClient) -> list[str]:
    """How ``cls`` fails the calls the server makes through ``protocol`` (empty: it does not):
    a missing method; a coroutine function where the server iterates the result (or the reverse);
    a positional parameter of another name; a keyword parameter ``cls`` takes neither by name nor
    by ``**kwargs``; a default the protocol has and ``cls`` lacks; a required parameter of
    ``cls``'s own, which the server would not pass."""
    P, K = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    problems = []
    for name in [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]:
        want_fn, have_fn = getattr(protocol, name), getattr(cls, name, None)
        if not callable(have_fn):
            problems.append(f"{name}: missing")
            continue
        awaited = inspect.iscoroutinefunction(want_fn)
        if awaited != inspect.iscoroutinefunction(have_fn):
            problems.append(f"{name}: {'not ' if awaited else ''}a coroutine function")
        iterated_async = "AsyncIterator" in str(inspect.signature(want_fn).return_annotation)
        if inspect.isasyncgenfunction(have_fn) and not iterated_async:
            problems.append(f"{name}: an async generator where the server iterates in a thread")
        want = list(inspect.signature(want_fn).parameters.values())[1:]
        have = {p.name: p for p in list(inspect.signature(have_fn).parameters.values())[1:]}
        positional = [p for p in have.values() if p.kind == P]
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in have.values())
        used = set()
        for i, w in enumerate(want):
            assert w.kind in (P, K), f"{protocol.__name__}.{name}: only named parameters are checked"
            if w.kind == P:
                h = positional[i] if i < len(positional) else None
                if h is None:
                    problems.append(f"{name}: takes no positional parameter {w.name!r}")
                    continue
                if h.name != w.name:
                    problems.append(f"{name}: positional parameter {i + 1} is named {h.name!r}, not {w.name!r}")
            else:
                h = have.get(w.name)
                if h is None or h.kind not in (P, K):
                    if not takes_kwargs:
                        problems.append(f"{name}: takes no {w.name!r}")
                    continue
            used.add(h.name)
            if w.default is not w.empty and h.default is h.empty:
                problems.append(f"{name}: {w.name!r} needs a default")
        for h in have.values():
            if h.name not in used and h.kind in (P, K) and h.default is h.empty:
                problems.append(f"{name}: its own {h.name!r} is required")
    return problems


@pytest.mark.parametrize(
    "cls", [FailingLLM, RaisingBackendLLM, byzerllm.ByzerLLM, byzerllm.SimpleByzerLLM], ids=lambda c: c.__name__
)
def test_the_fakes_and_the_real_clients_are_chat_clients(cls):
    assert issubclass(cls, ChatClient)
    assert protocol_mismatches(cls) == []


def test_the_protocol_check_finds_what_a_fake_gets_wrong():
    class Wrong(FailingLLM):
        async def async_emb(self, name: str, texts: list[str]) -> list[LLMResponse]:  # other names
            return []

        async def async_stream_completion(self, prompt: str, **kwargs: Any) -> list[Any]:  # a coroutine
            return []

        def async_completion(self, prompt: str, *, model: str, llm_config: dict[str, Any]) -> LLMResponse:
            return LLMResponse("", prompt)  # not async, and no extra_request_params

        def get_meta(self, model: str, verbose: bool) -> dict[str, Any]:  # a parameter the server never passes
            return {}

        async def stream_chat_oai(self, conversations: list[dict[str, Any]], **kwargs: Any) -> AsyncIterator[Any]:
            yield "", SingleOutputMeta()  # the server iterates it in a thread

    assert sorted(protocol_mismatches(Wrong)) == [
        "async_completion: not a coroutine function",
        "async_completion: takes no 'extra_request_params'",
        "async_emb: positional parameter 1 is named 'name', not 'model'",
        "async_emb: positional parameter 2 is named 'texts', not 'request'",
        "async_stream_completion: a coroutine function",
        "get_meta: its own 'verbose' is required",
        "stream_chat_oai: an async generator where the server iterates in a thread",
    ]
    assert "list_deployments: missing" in protocol_mismatches(type("Bare", (), {}))


class CutStreamLLM(FailingLLM):
    """A stream that delivers one chunk, then fails on a field of the client's own naming."""

    async def async_stream_chat_oai(self, conversations, *, model, llm_config, delta_mode, extra_request_params):
        yield "partial", SingleOutputMeta()
        await self._fail("async_stream_chat_oai")


def test_an_error_after_the_stream_started_names_the_requests_own_field():
    from byzerllm.errors import InvalidRequestError

    app = create_app(CutStreamLLM(InvalidRequestError("too long", param="conversations[0].content")))
    with TestClient(app) as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        r = http.post("/v1/chat/completions", json=body)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.status_code == 200 and events[-1]["error"]["param"] == "messages.[0].content"
