"""The compatibility tests' model: a recording OpenAI-compatible upstream behind a real
``saas/openai`` deployment of ``SimpleByzerLLM``, made the way auto-coder makes its clients."""

from __future__ import annotations

import pytest

import byzerllm

from ..saas_upstream import serve
from .upstream import Recorder


@pytest.fixture(scope="session")
def upstream():
    recorder = Recorder()
    with serve(recorder.app) as url:
        recorder.url = url + "/v1"
        yield recorder


@pytest.fixture
def llm(upstream):
    """auto-coder's way of making a SaaS client (autocoder/utils/llms.py)."""
    upstream.bodies.clear()
    upstream.text, upstream.reasoning, upstream.refuse_json_schema = '{"value": true}', "", False
    client = byzerllm.SimpleByzerLLM(default_model_name="deepseek_chat")
    client.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name="deepseek_chat",
        infer_params={
            "saas.base_url": upstream.url,
            "saas.api_key": "k",
            "saas.model": "deepseek-chat",
            "saas.is_reasoning": False,
            "saas.max_output_tokens": 8096,
        },
    )
    yield client
    client.close()


def deploy(client, upstream, name, **params):
    client.deploy(
        model_path="",
        pretrained_model_type="saas/openai",
        udf_name=name,
        infer_params={"saas.base_url": upstream.url, "saas.api_key": "k", "saas.model": name, **params},
    )
