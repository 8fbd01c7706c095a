"""Applications built on the byzerllm client: the built-in vector + full-text store."""
