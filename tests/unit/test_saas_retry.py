"""Retries, fallbacks and the deadline of SaaS backends, against a real local HTTP upstream that
fails on purpose (no Ray: the backend is used directly)."""

from __future__ import annotations

import json
import time

import pytest

from byzerllm.backends.openai_compat import OpenAICompatBackend
from byzerllm.backends.saas_retry import RetryPolicy, retry_after
from byzerllm.errors import InvalidRequestError, UpstreamError
from byzerllm.types import ChatRequest

from ..saas_upstream import Faults, serve

ASK = [{"role": "user", "content": "hi"}]


def backend(faults, **options) -> OpenAICompatBackend:
    return OpenAICompatBackend("", {"base_url": faults.url, "model": "m", "backoff": 0.01, **options})


def test_429_is_retried_after_retry_after_then_reported(faults):
    faults.reset("429", retry_after="0.2")
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="answered 429: slow down") as err:
        backend(faults, max_retries=2).chat(ChatRequest(ASK))
    assert faults.attempts == 3 and err.value.attempts == 3
    assert time.monotonic() - start >= 0.4  # two waits of Retry-After
    assert err.value.status == 429 and err.value.request_id == "req-42" and err.value.status_code == 429
    assert err.value.retry_after == pytest.approx(0.2)


def test_retry_after_past_the_deadline_gives_up_at_once(faults):
    faults.reset("429", retry_after="30")
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="would pass the deadline of 2s") as err:
        backend(faults, max_retries=5, deadline=2).chat(ChatRequest(ASK))
    assert faults.attempts == 1 and err.value.attempts == 1 and time.monotonic() - start < 1


def test_500_is_retried_then_reported_as_502(faults):
    faults.reset("500")
    with pytest.raises(UpstreamError, match="upstream broke") as err:
        backend(faults, max_retries=3).chat(ChatRequest(ASK))
    assert faults.attempts == 4 and err.value.status == 500 and err.value.status_code == 502


def test_a_400_is_not_retried(faults):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    calls = []

    async def bad(request):
        calls.append(1)
        return JSONResponse({"error": {"message": "bad max_tokens"}}, status_code=400)

    with serve(Starlette(routes=[Route("/v1/chat/completions", bad, methods=["POST"])])) as url:
        with pytest.raises(UpstreamError, match="bad max_tokens") as err:
            OpenAICompatBackend("", {"base_url": url + "/v1", "model": "m"}).chat(ChatRequest(ASK))
    assert len(calls) == 1 and err.value.status_code == 400


def test_slow_upstream_ends_within_the_deadline(faults):
    faults.reset("slow", delay=5)
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="did not answer") as err:
        backend(faults, timeout=0.4, max_retries=10, deadline=1.0).chat(ChatRequest(ASK))
    spent = time.monotonic() - start
    assert spent < 1.5  # the deadline, plus the client's own overhead
    assert err.value.status == 504 and err.value.status_code == 504 and faults.attempts >= 2
    faults.reset("slow", delay=5)
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="did not answer"):
        list(backend(faults, timeout=0.4, max_retries=10, deadline=1.0).stream(ChatRequest(ASK)))
    assert time.monotonic() - start < 1.5


def test_a_stream_dropped_before_its_first_token_is_retried(faults):
    faults.reset("drop_before")
    with pytest.raises(UpstreamError) as err:
        list(backend(faults, max_retries=2).stream(ChatRequest(ASK)))
    assert faults.attempts == 3 and err.value.status == 502 and err.value.attempts == 3


def test_a_stream_dropped_after_a_token_is_not_retried(faults):
    faults.reset("drop_after")
    pieces = []
    with pytest.raises(UpstreamError, match="not retried") as err:
        for c in backend(faults, max_retries=2).stream(ChatRequest(ASK)):
            pieces.append(c.delta)
    assert pieces == ["Hel"] and faults.attempts == 1 and err.value.status == 502


def test_malformed_json_is_retried_then_reported(faults):
    faults.reset("malformed")
    with pytest.raises(UpstreamError, match="malformed") as err:
        backend(faults, max_retries=1).chat(ChatRequest(ASK))
    assert faults.attempts == 2 and err.value.status_code == 502
    faults.reset("malformed")
    with pytest.raises(UpstreamError, match="malformed"):
        list(backend(faults, max_retries=1).stream(ChatRequest(ASK)))
    assert faults.attempts == 2


def test_fallback_models_answer_when_the_primary_fails(faults):
    faults.reset("fail_model", fail_model="primary")
    b = backend(faults, model="primary", max_retries=1, fallback_models=["backup"])
    resp = b.chat(ChatRequest(ASK))
    assert resp.text == "ok" and faults.models == ["primary", "primary", "backup"]
    assert resp.details["model"] == "backup" and resp.details["attempts"] == 3
    faults.reset("fail_model", fail_model="primary")
    chunks = list(b.stream(ChatRequest(ASK)))
    assert "".join(c.delta for c in chunks) == "ok" and chunks[-1].details["model"] == "backup"
    assert chunks[-1].input_tokens == 3 and chunks[-1].generated_tokens == 2
    # a fallback on another server, given as options
    faults.reset("500")
    with serve(Faults().app) as other:
        b = backend(faults, max_retries=0, fallback_models=[{"model": "elsewhere", "base_url": other + "/v1"}])
        assert b.chat(ChatRequest(ASK)).details["model"] == "elsewhere"
    assert faults.attempts == 1


def test_usage_and_request_id_in_details(faults):
    faults.reset("ok")
    resp = backend(faults).chat(ChatRequest(ASK))
    assert (resp.input_tokens, resp.generated_tokens) == (3, 1)
    assert resp.details == {
        "model": "m",
        "attempts": 1,
        "request_id": "req-ok",
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def test_bad_policy_options_are_named():
    with pytest.raises(InvalidRequestError, match="saas.deadline") as err:
        RetryPolicy.from_options({"deadline": "soon"})
    assert err.value.param == "saas.deadline"
    with pytest.raises(InvalidRequestError, match="saas.max_retries"):
        RetryPolicy.from_options({"max_retries": -1})
    with pytest.raises(InvalidRequestError, match="fallback_models=3 is invalid") as err:
        OpenAICompatBackend("", {"model": "m", "fallback_models": 3})
    assert err.value.param == "fallback_models"


def test_retry_after_header_forms():
    assert retry_after({"retry-after": "2"}) == 2
    assert retry_after({"retry-after-ms": "150"}) == 0.15
    assert 0 <= retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None


@pytest.mark.parametrize(("value", "verified"), [("false", False), (False, False), (True, True), ("true", True)])
def test_https_verify_false_means_false(value, verified):
    import ssl

    http = OpenAICompatBackend("", {"model": "m", "https_verify": value}).client._client
    mode = http._transport._pool._ssl_context.verify_mode  # the client's own TLS context
    assert (mode == ssl.CERT_REQUIRED) is verified and (mode == ssl.CERT_NONE) is not verified


def test_server_sent_events_are_read_as_the_format_says():
    from byzerllm.backends.openai_compat import sse_events

    lines = [": keep-alive", 'data: {"a":', "data: 1}", "", "event: error", 'data:{"error": "x"}', "", "data: [DONE]"]
    assert list(sse_events(iter(lines))) == [(None, '{"a":\n1}'), ("error", '{"error": "x"}'), (None, "[DONE]")]


def test_an_error_sent_inside_a_stream_names_the_provider_and_its_message():
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def broken(request):
        async def events():
            delta = {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
            yield "data: " + json.dumps(delta) + "\n\n"
            yield 'data: {"error": {"message": "the model overloaded"}}\n\n'

        return StreamingResponse(events(), media_type="text/event-stream")

    with serve(Starlette(routes=[Route("/v1/chat/completions", broken, methods=["POST"])])) as url:
        pieces = []
        with pytest.raises(UpstreamError, match="broke off the stream: the model overloaded") as err:
            for chunk in OpenAICompatBackend("", {"base_url": url + "/v1", "model": "m"}).stream(ChatRequest(ASK)):
                pieces.append(chunk.delta)
    assert pieces == ["Hel"] and err.value.status_code == 502
