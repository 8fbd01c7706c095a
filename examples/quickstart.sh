#!/usr/bin/env bash
# Deploy the built-in model (SmolLM2-135M-Instruct on llama.cpp) as smollm2_chat with 2 workers,
# query it from the command line and from Python, and print its stat.
# Starts a local Ray cluster when none is running.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

byzerllm cluster start
byzerllm undeploy --model smollm2_chat >/dev/null 2>&1 || true   # a re-run replaces the deployment
byzerllm deploy --model smollm2_chat --model_path builtin:smollm2 --num_workers 2
byzerllm query --model smollm2_chat --query "What is the capital of France?" --max_length 60
python examples/quickstart.py
byzerllm stat --model smollm2_chat
