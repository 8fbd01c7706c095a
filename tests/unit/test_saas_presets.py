"""Each SaaS preset against a local server speaking that provider's documented wire format: the
request it sends (path, auth header, default model, stream options) and how the answer's
provider-specific fields are translated (reasoning text, usage placement, tool calls)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from byzerllm.backends.openai_compat import OpenAICompatBackend
from byzerllm.backends.saas_presets import presets, resolve, saas_types
from byzerllm.errors import InvalidRequestError
from byzerllm.types import ChatRequest

from ..saas_upstream import chunk, completion, serve, sse

# preset -> (field of a reasoning model's thinking, usage in the stream's last choice (Moonshot),
#            stream_options sent, model to deploy when the preset has no default); from each
#            provider's API documentation (the preset's "docs")
WIRE = {
    "deepseek": ("reasoning_content", False, True, None),
    "qianwen": ("reasoning_content", False, True, None),
    "zhipu": ("reasoning_content", False, False, None),
    "siliconflow": ("reasoning_content", False, True, None),
    "moonshot": ("reasoning_content", True, True, None),
    "ollama": ("reasoning", False, True, "qwen3:0.6b"),
    "vllm": ("reasoning_content", False, True, "Qwen/Qwen3-0.6B"),
    "openai": (None, False, True, "gpt-4o-mini"),
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def provider_app(path: str, reasoning: str | None, usage_in_choice: bool, seen: list[dict]) -> Starlette:
    async def chat(request: Request):
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        think = {reasoning: "Let me think."} if reasoning else {}
        if body.get("stream"):
            last = chunk({}, "stop", **({"usage": USAGE} if usage_in_choice else {}))
            events = [
                chunk({"role": "assistant", "content": "", **think}),
                chunk({"content": "Hi"}),
                chunk({"content": " there"}),
                last,
            ]
            if not usage_in_choice:
                events.append(chunk(usage=USAGE))
            return StreamingResponse(iter([sse(*events, "[DONE]")]), media_type="text/event-stream")
        if body.get("tools"):
            tool = body["tools"][0]["function"]["name"]
            out = completion(
                None,
                body["model"],
                USAGE,
                tool_calls=[
                    {"id": "call_0", "type": "function", "function": {"name": tool, "arguments": '{"city": "Paris"}'}}
                ],
            )
            out["choices"][0]["finish_reason"] = "tool_calls"
            return JSONResponse(out)
        return JSONResponse(completion("Hi there", body["model"], USAGE, **think))

    return Starlette(routes=[Route(path + "/chat/completions", chat, methods=["POST"])])


def test_every_preset_is_tested_here():
    openai_presets = {n for n, p in presets().items() if p["backend"] == "openai" and n != "azure_openai"}
    assert openai_presets - {"official_openai"} == set(WIRE)
    assert "saas/deepseek" in saas_types() and resolve("saas/official_openai") == ("openai", "official_openai")


@pytest.mark.parametrize("name", sorted(WIRE))
def test_preset_translation(name):
    reasoning, usage_in_choice, stream_options, model = WIRE[name]
    options = presets()[name]["options"]
    path = urlsplit(options["base_url"]).path.rstrip("/")
    seen: list[dict] = []
    with serve(provider_app(path, reasoning, usage_in_choice, seen)) as url:
        cfg = {"preset": name, "base_url": url + path, "api_key": "sk-test-0000"}
        if model:
            cfg["model"] = model
        backend = OpenAICompatBackend("", cfg)
        expected_model = model or options["model"]
        resp = backend.chat(
            ChatRequest([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], max_tokens=20)
        )
        chunks = list(backend.stream(ChatRequest([{"role": "user", "content": "hi"}])))
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather of a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ]
        called = backend.chat(
            ChatRequest([{"role": "user", "content": "weather?"}], tools=tools, tool_choice="required")
        )
    # the request, as the provider documents it
    assert seen[0]["auth"] == "Bearer sk-test-0000" and seen[0]["body"]["model"] == expected_model
    assert seen[0]["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert seen[0]["body"]["max_tokens"] == 20
    assert ("stream_options" in seen[1]["body"]) == stream_options and seen[1]["body"]["stream"] is True
    assert seen[2]["body"]["tools"] == tools and seen[2]["body"]["tool_choice"] == "required"
    # the answer, translated
    assert resp.text == "Hi there" and (resp.input_tokens, resp.generated_tokens) == (11, 5)
    assert resp.reasoning_content == ("Let me think." if reasoning else "")
    assert resp.details["usage"] == USAGE and resp.details["model"] == expected_model
    assert "".join(c.delta for c in chunks) == "Hi there"
    assert "".join(c.reasoning for c in chunks) == ("Let me think." if reasoning else "")
    last = chunks[-1]
    assert last.finish_reason == "stop" and (last.input_tokens, last.generated_tokens) == (11, 5)
    assert called.tool_calls == [
        {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert called.finish_reason == "tool_calls"


def test_azure_openai_request_shape():
    """Azure's path carries the deployment and api-version; the key goes in an ``api-key`` header."""
    seen: list[Request] = []

    async def chat(request: Request):
        seen.append(request)
        body = await request.json()
        assert request.path_params["deployment"] == "gpt4o-prod"
        if body.get("stream"):
            return StreamingResponse(
                iter(
                    [
                        sse(
                            chunk({"role": "assistant", "content": "Hi"}),
                            chunk({}, "stop"),
                            chunk(usage=USAGE),
                            "[DONE]",
                        )
                    ]
                ),
                media_type="text/event-stream",
            )
        return JSONResponse(completion("Hi", "gpt-4o", USAGE))

    app = Starlette(routes=[Route("/openai/deployments/{deployment}/chat/completions", chat, methods=["POST"])])
    with serve(app) as url:
        backend = OpenAICompatBackend(
            "",
            {
                "preset": "azure_openai",
                "base_url": url,
                "api_key": "az-key-9999",
                "deployment_id": "gpt4o-prod",
                "api_version": "2024-10-21",
            },
        )
        resp = backend.chat(ChatRequest([{"role": "user", "content": "hi"}]))
        streamed = list(backend.stream(ChatRequest([{"role": "user", "content": "hi"}])))
    assert resp.text == "Hi" and resp.input_tokens == 11
    assert "".join(c.delta for c in streamed) == "Hi" and streamed[-1].generated_tokens == 5
    for request in seen:
        assert request.query_params["api-version"] == "2024-10-21"
        assert request.headers["api-key"] == "az-key-9999" and "authorization" not in request.headers
    with pytest.raises(InvalidRequestError, match="saas.api_version"):
        OpenAICompatBackend("", {"preset": "azure_openai", "base_url": url, "deployment": "d", "api_version": None})


def test_api_key_from_the_presets_environment_variable(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-from-env")
    backend = OpenAICompatBackend("", {"preset": "deepseek"})
    assert backend.config["api_key"] == "sk-from-env" and backend.model == "deepseek-chat"


def test_unknown_preset_and_type_are_named():
    with pytest.raises(InvalidRequestError, match="saas.preset") as err:
        OpenAICompatBackend("", {"preset": "nowhere", "model": "m"})
    assert err.value.param == "saas.preset"
    with pytest.raises(InvalidRequestError, match="saas/deepseek") as err:
        resolve("saas/nowhere")
    assert err.value.param == "pretrained_model_type"


def test_presets_file_is_plain_data():
    from importlib.resources import files

    raw = json.loads(files("byzerllm.backends").joinpath("saas_presets.json").read_text())
    for name, entry in raw.items():
        if name.startswith("_") or "alias" in entry:
            continue
        assert set(entry) == {"backend", "docs", "options"} and entry["docs"].startswith("https://")
