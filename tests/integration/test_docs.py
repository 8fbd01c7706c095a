"""Every example in the README and docs/ runs, on the real model and a real Ray cluster."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ..conftest import BIN, ROOT

pytestmark = pytest.mark.integration
FENCE = re.compile(r"^(`{3,})(\w+)\n(.*?)^\1[ \t]*$", re.S | re.M)


def blocks(path: Path, lang: str) -> list[str]:
    return [body for _, kind, body in FENCE.findall(path.read_text()) if kind == lang]


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an example to its end; then stop whatever it left in the background (a server whose
    example failed before stopping it would otherwise hold the output open) and remove the temporary
    files it made (its ``mktemp -d`` and ``tempfile.mkdtemp()`` folders go to a TMPDIR of its own)."""
    with tempfile.TemporaryDirectory(prefix="byzerllm-example-") as scratch:
        os.chmod(scratch, 0o755)  # as /tmp: a store server run as its own user must pass through it
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1", "TMPDIR": scratch}
        return _run(args, timeout, env)


def _run(args: list[str], timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, cwd=ROOT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(args, code, out.read(), err.read())
    assert code == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHOWN = re.compile(r"^(?P<indent>\s*)print\((?P<expr>.*)\)\s+#\s*(?P<value>.+?)\s*$")


def checked(code: str) -> str:
    """``code`` with each one-line ``print(x)  # <Python literal>`` also asserting that x equals it,
    so the outputs the docs promise are checked, not only printed."""
    lines = []
    for line in code.splitlines():
        m = SHOWN.match(line)
        try:
            value = ast.literal_eval(m["value"]) if m else None
            ast.parse(m["expr"]) if m else None
        except (ValueError, SyntaxError):
            m = None
        if m:
            line = f"{m['indent']}_shown = {m['expr']}; print(_shown); assert _shown == {value!r}, _shown"
        lines.append(line)
    return "\n".join(lines)


def test_readme_quickstart_is_exactly_two_commands():
    quickstart = blocks(ROOT / "README.md", "bash")[0].strip().splitlines()
    assert quickstart == [
        "bash scripts/install.sh && bash examples/quickstart.sh",
        "bash scripts/install.sh --dev && .venv/bin/python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert quickstart[1] in ci


def test_quickstart_main_job(ray_cluster):
    """The first Quickstart command after the install: deploy, query from CLI and Python, stat."""
    proc = run(["bash", "examples/quickstart.sh"])
    assert "Deployed smollm2_chat: 2 worker(s)" in proc.stdout
    assert '"total_workers": 2' in proc.stdout
    assert (
        sum(int(n) for n in re.findall(r"^\s+(\d+),?$", proc.stdout.split('"total_requests"')[1].split("]")[0], re.M))
        == 3
    )
    run([str(BIN / "byzerllm"), "undeploy", "--model", "smollm2_chat"])


@pytest.fixture
def undeploys_leftovers(llm):
    """An example that fails before its own undeploy must not leave deployments to later tests."""
    before = set(llm.list_deployments())
    yield
    for name in set(llm.list_deployments()) - before:
        llm.undeploy(name)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_examples(ray_cluster, undeploys_leftovers, doc, tmp_path):
    code = blocks(doc, "python")
    if not code:
        pytest.skip("no python example")
    script = tmp_path / "example.py"
    script.write_text(checked("\n".join(code)))
    run([sys.executable, str(script)])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_shell_examples(ray_cluster, undeploys_leftovers, doc, tmp_path):
    code = blocks(doc, "bash")
    if doc.name == "README.md":
        code = code[1:]  # the Quickstart block is checked above
    if not code:
        pytest.skip("no shell example")
    script = tmp_path / "example.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(code))
    run(["bash", str(script)])
