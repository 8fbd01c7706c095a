"""``abort(request_id)`` stops a running request (Byzer-LLM: R-bc:1035, vLLM only; here every
backend), on the in-process runtime with the built-in model. The Ray runtime's twin is in
tests/integration/test_ray_deployment.py."""

from __future__ import annotations

import threading
import time

import byzerllm

LONG = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]


def run_and_abort(llm, model: str, request_id: str):
    """Start a 400-token generation tagged ``request_id``, abort it once a worker is busy with it;
    returns its response and the seconds the abort took to end it."""
    out = []
    config = {"max_length": 400, "ignore_eos": True, "gen.request_id": request_id}
    thread = threading.Thread(target=lambda: out.extend(llm.chat_oai(LONG, model=model, llm_config=config)))
    thread.start()
    deadline = time.monotonic() + 30
    while llm.stat(model)["busy_workers"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    start = time.monotonic()
    llm.abort(request_id, model=model)
    thread.join(timeout=30)
    return out[0], time.monotonic() - start


def test_abort_stops_a_running_request_in_process():
    with byzerllm.SimpleByzerLLM("abort_chat") as llm:
        llm.deploy(
            model_path="builtin:smollm2", pretrained_model_type="custom/auto", udf_name="abort_chat", infer_params={}
        )
        resp, took = run_and_abort(llm, "abort_chat", "abort-inprocess-1")
        assert resp.metadata["finish_reason"] == "cancelled"
        assert 0 < resp.metadata["generated_tokens_count"] < 400 and took < 5
        llm.abort("already-finished", model="abort_chat")  # nothing runs under that id: no error
        assert llm.chat_oai(LONG, llm_config={"max_length": 3})[0].metadata["finish_reason"] == "length"
