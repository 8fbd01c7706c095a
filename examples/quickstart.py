"""Talk to the smollm2_chat deployment from Python (run examples/quickstart.sh first)."""

import byzerllm

byzerllm.connect_cluster()
llm = byzerllm.ByzerLLM.from_default_model("smollm2_chat")

resp = llm.chat_oai([{"role": "user", "content": "Write one sentence about the sea."}], llm_config={"max_length": 60})
print(resp[0].output)
print(resp[0].metadata)

for delta, meta in llm.stream_chat_oai(
    [{"role": "user", "content": "Count from one to five."}], llm_config={"max_length": 40}, delta_mode=True
):
    print(delta, end="", flush=True)
print(f"\n[{meta.generated_tokens_count} tokens, finish_reason {meta.finish_reason}]")
