"""Fine-tuning and pre-training jobs on Ray Train (see ``jobs``), their data formats (``data``),
hyper-parameters (``config``), and the merge and GGUF export of what they produce (``export``)."""
