"""Byzer-LLM's path of its OpenAI serving classes: re-exports of ``byzerllm.server.openai_serving``."""
