"""The vllm engine backend on a GPU machine (skipped, with the reason, where there is none)."""

from __future__ import annotations

import os

import pytest

import byzerllm
from byzerllm.backends.vllm import gpu_count

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(gpu_count() == 0, reason="vLLM needs an NVIDIA GPU and this machine has none"),
    pytest.mark.skipif(
        not os.environ.get("BYZERLLM_VLLM_MODEL"),
        reason="set BYZERLLM_VLLM_MODEL to a Hugging Face chat model folder for vLLM to serve",
    ),
]


def test_chat_and_stream_on_vllm(ray_cluster):
    llm = byzerllm.ByzerLLM().setup_infer_backend(byzerllm.InferBackend.VLLM).setup_gpus_per_worker(1)
    llm.deploy(model_path=os.environ["BYZERLLM_VLLM_MODEL"], udf_name="vllm_chat", infer_params={"max_model_len": 4096})
    try:
        [resp] = llm.chat_oai([{"role": "user", "content": "Name a colour."}], model="vllm_chat")
        assert resp.metadata["generated_tokens_count"] > 0
        assert len(list(llm.stream_chat_oai([{"role": "user", "content": "Count to 5."}], model="vllm_chat"))) > 1
    finally:
        llm.undeploy("vllm_chat")
