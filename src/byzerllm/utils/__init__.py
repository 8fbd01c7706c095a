"""Import paths of the Byzer-LLM documents (``byzerllm.utils.client``)."""
