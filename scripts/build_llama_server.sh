#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama.cpp sources vendored in the llama-cpp-python sdist
# (the same version as the wheel), with the portable CPU flags of ENVIRONMENT.md: the default build
# uses -march=native and segfaults on the first token on VMs that advertise AMX.
# It also keeps llama.cpp's convert_hf_to_gguf.py (with its gguf-py) from the same sources, which
# GGUF export of trained models runs; linked as .venv/share/byzerllm.
# The binary is cached in ~/.cache/byzerllm/engines/<key>/ (key: version and flags) and linked as
# .venv/bin/llama-server, where the llama_server backend finds it.
#   bash scripts/build_llama_server.sh VERSION "CMAKE FLAGS"
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$1
FLAGS=$2
key=$(printf 'llama-server %s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-16)
cache="${BYZERLLM_ENGINE_CACHE:-$HOME/.cache/byzerllm/engines}/$key"
if [[ ! -x "$cache/bin/llama-server" ]]; then
  echo "Building llama-server from llama-cpp-python $VERSION's llama.cpp (8-10 minutes on 2 cores)..."
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$VERSION"
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  src=$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)
  # shellcheck disable=SC2086 # the flags are several words
  cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release $FLAGS \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
  cmake --build "$tmp/build" --target llama-server -j2 >/dev/null
  mkdir -p "$cache/bin"
  cp "$tmp/build/bin/llama-server" "$cache/bin/"
  rm -rf "$tmp"
fi
if [[ ! -d "$cache/convert/conversion" ]]; then
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$VERSION"
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  src=$(echo "$tmp"/llama_cpp_python-*/vendor/llama.cpp)
  mkdir -p "$cache/convert"
  cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$cache/convert/"
  rm -rf "$tmp"
fi
ln -sf "$cache/bin/llama-server" .venv/bin/llama-server
mkdir -p .venv/share
ln -sfn "$cache/convert" .venv/share/byzerllm
