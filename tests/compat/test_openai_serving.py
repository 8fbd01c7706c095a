"""Byzer-LLM's OpenAI serving classes (``byzerllm.utils.client.entrypoints.openai``) serve a client
object the way auto-coder's document Q&A server does (autocoder/rag/api_server.py): a FastAPI app
whose routes call ``create_chat_completion`` / ``create_completion``, hit by the official
``openai`` client."""

from __future__ import annotations

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from byzerllm.utils.client.entrypoints.openai.protocol import ChatCompletionRequest, CompletionRequest, ErrorResponse
from byzerllm.utils.client.entrypoints.openai.serving_chat import OpenAIServingChat
from byzerllm.utils.client.entrypoints.openai.serving_completion import OpenAIServingCompletion

from ..saas_upstream import serve


def app_for(llm, served: str | None) -> FastAPI:
    chat = OpenAIServingChat(llm_client=llm, response_role="assistant", server_model_name=served)
    completion = OpenAIServingCompletion(llm_client=llm, server_model_name=served)
    app = FastAPI()

    def reply(result):
        if isinstance(result, ErrorResponse):
            return JSONResponse(result.model_dump(), status_code=result.code)
        if hasattr(result, "__aiter__"):
            return StreamingResponse(result, media_type="text/event-stream")
        return JSONResponse(result.model_dump())

    @app.get("/v1/models")
    async def models():
        return (await chat.show_available_models()).model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        return reply(await chat.create_chat_completion(body, request))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return reply(await completion.create_completion(body, request))

    return app


@pytest.fixture
def client(llm):
    with serve(app_for(llm, "deepseek_chat")) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def test_chat_completion_and_its_stream(client, upstream):
    upstream.reasoning = "hmm"
    out = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], max_tokens=9)
    assert out.choices[0].message.content == upstream.text and out.choices[0].finish_reason == "stop"
    assert out.choices[0].message.model_extra["reasoning_content"] == "hmm"
    assert out.usage.prompt_tokens == 3 and upstream.bodies[-1]["max_tokens"] == 9
    chunks = list(
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == upstream.text
    assert "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks) == "hmm"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 2


def test_completion_and_models(client, upstream):
    out = client.completions.create(model="any", prompt="Say hi", max_tokens=4)
    assert out.choices[0].text == upstream.text and upstream.bodies[-1]["messages"] == [
        {"role": "user", "content": "Say hi"}
    ]
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="any", prompt="x", stream=True))
    assert streamed == upstream.text
    assert [m.id for m in client.models.list().data] == ["deepseek_chat"]


def test_an_unknown_model_is_a_404_and_a_bad_request_key_a_400(llm):
    # the body's own extra_body is the request's extra_request_params (serving_chat.py)
    with serve(app_for(llm, None)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError, match="did you mean 'temperature'"):
            client.chat.completions.create(
                model="deepseek_chat",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"extra_body": {"temperatur": 1}},
            )
