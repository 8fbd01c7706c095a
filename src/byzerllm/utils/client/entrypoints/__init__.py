"""Byzer-LLM's ``byzerllm.utils.client.entrypoints`` path (see ``byzerllm.server.openai_serving``)."""
