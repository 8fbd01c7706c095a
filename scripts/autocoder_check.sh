#!/usr/bin/env bash
# Proves that a real downstream client, auto-coder 1.0.0 (PyPI), runs against this byzerllm.
#
#   bash scripts/autocoder_check.sh            setup + imports + end-to-end model call
#   bash scripts/autocoder_check.sh --survey   also import every autocoder.* module one by one and
#                                              list the byzerllm names they miss (about 3 more minutes;
#                                              it fails only when a module fails because of byzerllm)
#
# 1. venv: auto-coder gets a virtualenv of its own, so its pins never move the project's .venv:
#    ${BYZERLLM_AUTOCODER_VENV:-$HOME/.cache/byzerllm/autocoder-venv}, reused when it exists and
#    its inputs (this script, the driver, pyproject.toml) did not change. It holds auto-coder==1.0.0
#    (--no-deps), auto-coder's own Requires-Dist read from the wheel's METADATA less byzerllm,
#    this repo installed editable with --no-deps (so src/ changes need no reinstall), and only the
#    byzerllm deps auto-coder's use of it needs. torch is pinned by scripts/constraints.txt (CPU build).
#    First run: about 1 minute (PyPI downloads); then a few seconds.
# 2. imports: `import autocoder.auto_coder, autocoder.auto_coder_rag, autocoder.common.printer`.
# 3. end to end, no network: the project's .venv deploys the built-in model on Ray, `byzerllm serve`
#    puts it on a free localhost port, and in the auto-coder venv autocoder.utils.llms.get_single_llm
#    (auto-coder's own code) builds SimpleByzerLLM(default_model_name=...) + deploy(saas/openai,
#    saas.base_url=that server), then auto-coder's git_utils.generate_commit_message prompt function
#    runs on it with .with_llm(llm).run(...). Asserts on structure only (a non-empty string, token
#    counts), never on wording. About 1 minute (Ray start, model load, two ~4.4k-token prompts on CPU).
# Everything started here (server, deployment, a Ray cluster it had to start) is stopped on exit.
# Exit status 0 only when every step passed. Needs the project's .venv (scripts/install.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"

AUTOCODER_VERSION=1.0.0
PYTHON=${PYTHON:-python3.11}
VENV=${BYZERLLM_AUTOCODER_VENV:-$HOME/.cache/byzerllm/autocoder-venv}
DRIVER="$REPO/scripts/autocoder_driver.py"
PROJECT_BIN="$REPO/.venv/bin"
DEPLOYMENT=autocoder_check_chat
API_KEY=sk-autocoder-check
SURVEY=0
[[ "${1:-}" == "--survey" ]] && SURVEY=1
# the byzerllm deps that auto-coder's use of byzerllm needs (core deps + the saas client)
BYZERLLM_DEPS=(pydantic jinja2 click rich jsonschema docstring-parser openai httpx)
# auto-coder imports these but its METADATA does not declare them: psutil (autocoder/common/run_cmd.py,
# 24 modules), sqlmodel (autocoder/db/store.py, 38 modules, autocoder.auto_coder among them), pandas
# (autocoder/utils/_markitdown.py)
AUTOCODER_UNDECLARED=(psutil sqlmodel pandas)
# zhipuai holds pyjwt<2.9, so pip settles on mcp 1.19, which imports pydantic's private
# eval_type_backport, gone in pydantic 2.14: without this pin autocoder.common.mcp_hub fails to import
AUTOCODER_PINS=("pydantic<2.14")

log() { printf '\n== %s\n' "$*"; }
FAILED=()

# ---------------------------------------------------------------- 1. the auto-coder venv
setup_venv() {
  local stamp_file="$VENV/.autocoder-check-stamp" stamp
  # the checkout's path too: the venv holds it as an editable install
  stamp=$({ echo "$REPO"; cat "$REPO/scripts/autocoder_check.sh" "$DRIVER" "$REPO/pyproject.toml" \
          "$REPO/scripts/constraints.txt"; } | sha256sum | cut -c1-16)
  if [[ -x "$VENV/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
    log "venv: reusing $VENV"
    return
  fi
  log "venv: setting up $VENV"
  local t0=$SECONDS
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  local vpy="$VENV/bin/python" wheels="$VENV/wheels"
  mkdir -p "$wheels"
  # pip, less this machine's notes about its absent local index folders
  pip_() {
    local rc=0 err
    err=$(mktemp)
    "$vpy" -m pip "$@" 2>"$err" || rc=$?
    grep -v "^WARNING: Location 'file://" "$err" >&2 || true
    rm -f "$err"
    return $rc
  }
  pip_ install -q --upgrade pip wheel
  pip_ download -q --no-deps -d "$wheels" "auto-coder==$AUTOCODER_VERSION"
  local whl
  whl=$(ls "$wheels"/auto_coder-"$AUTOCODER_VERSION"-*.whl)
  # auto-coder's own requirements, from the wheel's METADATA, less byzerllm (this repo stands in)
  "$vpy" - "$whl" >"$VENV/autocoder-requirements.txt" <<'EOF'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            name = re.match(r"[A-Za-z0-9._-]+", req).group(0)
            if re.sub(r"[-_.]+", "-", name).lower() != "byzerllm":
                print(req)
EOF
  # constraints: the CPU torch (should anything ask for torch) and byzerllm held at this repo's
  # version, so no requirement (real_agent asks for "byzerllm") can pull byzerllm from PyPI
  local version
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -1)
  { cat "$REPO/scripts/constraints.txt"; echo "byzerllm==$version"; printf '%s\n' "${AUTOCODER_PINS[@]}"; } \
      >"$VENV/constraints.txt"

  pip_ install -q --no-deps "$whl"
  pip_ install -q --no-deps -e "$REPO"
  # pip's resolver then notes that auto-coder asks for byzerllm[saas]>=0.1.190: expected, this repo stands in
  pip_ install -q -c "$VENV/constraints.txt" "${BYZERLLM_DEPS[@]}" "${AUTOCODER_UNDECLARED[@]}" \
      -r "$VENV/autocoder-requirements.txt"
  # byzerllm must still be this repo's src/, and torch, if present, the CPU build
  "$vpy" - "$REPO" <<'EOF'
import importlib.metadata as md, pathlib, sys
import byzerllm
src = pathlib.Path(sys.argv[1], "src").resolve()
assert pathlib.Path(byzerllm.__file__).resolve().is_relative_to(src), f"byzerllm comes from {byzerllm.__file__}"
try:
    v = md.version("torch")
    assert v == "2.13.0" and not any(d.metadata["Name"].startswith("nvidia-") for d in md.distributions()), v
    print("torch", v)
except md.PackageNotFoundError:
    print("torch not installed (nothing needs it)")
print("byzerllm", byzerllm.__version__, "from", byzerllm.__file__)
print("auto-coder", md.version("auto-coder"))
EOF
  echo "$stamp" >"$stamp_file"
  echo "venv ready in $((SECONDS - t0))s"
}
setup_venv
VPY="$VENV/bin/python"

# auto-coder writes ~/.auto-coder (models.json, keys) and reads it: give it a HOME of its own
AC_HOME=$(mktemp -d)
SERVER_PID=""
STARTED_CLUSTER=0
DEPLOYED=0
cleanup() {
  local rc=$?
  set +e
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  if [[ $DEPLOYED == 1 ]]; then "$PROJECT_BIN/byzerllm" undeploy --model "$DEPLOYMENT" >/dev/null 2>&1; fi
  if [[ $STARTED_CLUSTER == 1 ]]; then "$PROJECT_BIN/byzerllm" cluster stop >/dev/null 2>&1; fi
  rm -rf "$AC_HOME"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ac_python() { HOME="$AC_HOME" PYTHONUNBUFFERED=1 "$VPY" "$DRIVER" "$@" </dev/null; }

# ---------------------------------------------------------------- 2. the imports
log "imports: autocoder.auto_coder, autocoder.auto_coder_rag, autocoder.common.printer"
ac_python imports autocoder.auto_coder autocoder.auto_coder_rag autocoder.common.printer || FAILED+=(imports)

if [[ $SURVEY == 1 ]]; then
  log "survey: every autocoder.* module, one subprocess each"
  ac_python survey || FAILED+=(survey)
fi

# ---------------------------------------------------------------- 3. end to end through byzerllm serve
log "end to end: built-in model -> byzerllm serve -> saas/openai SimpleByzerLLM -> auto-coder prompt function"
if ! "$PROJECT_BIN/byzerllm" list >/dev/null 2>&1; then
  STARTED_CLUSTER=1
  "$PROJECT_BIN/byzerllm" cluster start
fi
"$PROJECT_BIN/byzerllm" undeploy --model "$DEPLOYMENT" >/dev/null 2>&1 || true   # a leftover of an aborted run
DEPLOYED=1
# a 135M model answering a ~5k-token prompt (generate_commit_message's few-shot examples)
"$PROJECT_BIN/byzerllm" deploy --model "$DEPLOYMENT" --model_path builtin:smollm2 --num_workers 1 \
    --infer_params backend.max_model_len=8192 n_threads=2
PORT=$("$VPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PROJECT_BIN/byzerllm" serve --host 127.0.0.1 --port "$PORT" --api_key "$API_KEY" &
SERVER_PID=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "byzerllm serve exited"; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "byzerllm serve did not come up on port $PORT"; exit 1; }
echo "byzerllm serve is up on http://127.0.0.1:$PORT/v1"
ac_python e2e --base-url "http://127.0.0.1:$PORT/v1" --api-key "$API_KEY" --model "$DEPLOYMENT" || FAILED+=(e2e)

log "summary"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "auto-coder $AUTOCODER_VERSION runs against this byzerllm: imports and the end-to-end model call passed"
