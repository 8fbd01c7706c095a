#!/usr/bin/env bash
# Refresh the console screenshots that docs/console.md shows: runs the browser tests
# (tests/integration/test_console.py, on a local Ray cluster they start and stop) with their
# screenshots written into docs/images/.
set -euo pipefail
cd "$(dirname "$0")/.."
BYZERLLM_CONSOLE_SHOTS="$PWD/docs/images" .venv/bin/python -m pytest -q tests/integration/test_console.py
ls -1 docs/images/console-*.png
