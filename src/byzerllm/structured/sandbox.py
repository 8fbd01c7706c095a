"""Running model-written code in a separate, limited process.

What the sandbox stops:
- runaway time and memory: a wall-clock timeout (the process is killed), a CPU-time limit, an
  address-space limit (``memory_mb``) and a 16 MB file-size limit;
- network: the process gets its own empty network namespace when the kernel allows it
  (root, or unprivileged user namespaces), and every socket connect/bind/resolve is refused by a
  Python audit hook in any case;
- writes outside its temporary folder (opening for writing, creating, removing, renaming),
  starting processes (subprocess, os.system, exec, fork, spawn), and loading native code through
  ctypes: all refused by the audit hook. The folder is deleted afterwards.

What it does not stop: reading files the user running byzerllm can read; code that escapes
Python's audit hooks through an already-imported C extension; using the CPU within its limit.
It is a guard against mistakes of generated code, not a boundary against a determined attacker:
run byzerllm as a user without secrets when that matters.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from typing import Any

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000

_BOOTSTRAP = r'''
import json, os, sys, traceback
payload = json.loads(sys.stdin.read())
ROOT = os.path.realpath(os.getcwd())
BLOCKED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "os.spawn",
           "ctypes.dlopen", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
           "socket.gethostbyname")
PATHS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
         "shutil.rmtree", "os.symlink", "os.link", "os.utime")

def inside(path):
    try:
        path = os.fsdecode(path)
    except TypeError:
        return True  # a file descriptor: already open
    return os.path.realpath(path).startswith(ROOT + os.sep) or os.path.realpath(path) == ROOT

def hook(event, args):
    if event.startswith(BLOCKED):
        raise PermissionError(f"{event} is not allowed in the sandbox")
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "", args[2] or 0
        writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and not inside(args[0]):
            raise PermissionError(f"writing {args[0]} is not allowed: only the sandbox folder is writable")
    if event in PATHS and args and not inside(args[0]):
        raise PermissionError(f"{event} on {args[0]} is not allowed: only the sandbox folder is writable")

class Returned(dict):
    """Stands for the declared return class: its keyword arguments become a JSON object."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
    __getattr__ = dict.get

import datetime, math, re, json as _json  # common modules, imported before the hook
sys.addaudithook(hook)
namespace = {"__name__": "generated", "datetime": datetime, "math": math, "re": re, "json": _json}
for name in payload["classes"]:
    namespace[name] = type(name, (Returned,), {})
try:
    exec(compile(payload["code"], "<generated>", "exec"), namespace)
    value = namespace[payload["func"]](**payload["kwargs"])
    out = {"value": value}
    text = _json.dumps(out, default=lambda o: o.isoformat() if hasattr(o, "isoformat") else
                       (o.model_dump() if hasattr(o, "model_dump") else str(o)), ensure_ascii=False)
except BaseException as exc:
    frames = traceback.format_exception(exc, limit=-2)
    text = _json.dumps({"error": f"{type(exc).__name__}: {exc}", "traceback": "".join(frames[-3:])})
sys.stdout.write("\n<<result>>" + text)
'''


def _limits(memory_mb: int, cpu_seconds: int) -> None:
    """Runs in the child before exec: resource limits and, where allowed, no network."""
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET)  # unprivileged kernels; the audit hook stays either way


def run_function(
    code: str,
    func: str,
    kwargs: dict[str, Any],
    classes: list[str] | None = None,
    timeout: float = 10.0,
    memory_mb: int = 512,
) -> tuple[Any, str]:
    """Define ``code`` in a sandboxed Python process and call ``func(**kwargs)``.

    The modules datetime, math, re and json are already imported in the code's namespace (small
    models often forget the import). ``kwargs`` must be JSON-serialisable; ``classes`` are names
    the code may call to build its return value (their keyword arguments come back as a JSON
    object). Returns ``(value, "")``
    with the JSON-decoded return value, or ``(None, reason)`` for an exception (with the last
    frames of its traceback), a timeout, or a killed process.
    """
    payload = json.dumps({"code": code, "func": func, "kwargs": kwargs, "classes": classes or []})
    with tempfile.TemporaryDirectory(prefix="byzerllm-sandbox-") as folder:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": folder,
            "TMPDIR": folder,
            "PYTHONHASHSEED": "0",
            "LANG": "C.UTF-8",
        }
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _BOOTSTRAP],
                input=payload,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=folder,
                env=env,
                preexec_fn=lambda: _limits(memory_mb, max(1, int(timeout))),
            )
        except subprocess.TimeoutExpired:
            return None, f"the generated code did not finish within {timeout:g}s (sandbox timeout)"
    if proc.returncode == -signal.SIGXCPU:
        return None, f"the generated code used more than {max(1, int(timeout))}s of CPU time (sandbox timeout)"
    if "<<result>>" not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip()[-500:]
        return None, f"the sandbox process ended with status {proc.returncode} without a result: {tail}"
    result = json.loads(proc.stdout.rsplit("<<result>>", 1)[1])
    if "error" in result:
        return None, f"the generated code raised {result['error']}\n{result['traceback']}".strip()
    return result["value"], ""
