"""``byzerllm.apps.byzer_storage.env`` of Byzer-LLM: the machine's environment, and the newest
Byzer-Retrieval library in a folder.

Byzer-LLM's storage runs Byzer-Retrieval, a Java service shipped as ``byzer-retrieval-lib-<x.y.z>``
folders and run on JDK 21, and this module found both. Our ``ByzerStorage`` is an embedded SQLite
store, or a PostgreSQL server that ``byzerllm storage start --engine postgres`` runs, and needs
neither Java nor that library: the functions are kept for callers such as auto-coder, which look
the library up before connecting.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_LIB = re.compile(r"^byzer-retrieval-lib-(\d+)\.(\d+)\.(\d+)$")
_JAVA_VERSION = re.compile(r'version "(\d+)')


@dataclass
class EnvInfo:
    """What ``detect_env`` found: ``os_name`` is ``sys.platform``; ``java_version`` is the major
    version as a string (``"0"`` when unknown); ``cpu`` is ``"x86_64"`` or ``"arm64"``."""

    os_name: str
    os_version: str
    python_version: str
    conda_env: str | None
    virtualenv: str | None
    has_bash: bool
    java_home: str | None
    java_version: str
    cpu: str


def get_latest_byzer_retrieval_lib(directory: str) -> str | None:
    """The name (not the path) of the entry of ``directory`` named ``byzer-retrieval-lib-x.y.z``
    with the highest version, or None when there is none. Raises ``FileNotFoundError`` when
    ``directory`` does not exist."""
    found = [(tuple(int(n) for n in m.groups()), name) for name in os.listdir(directory) if (m := _LIB.match(name))]
    return max(found)[1] if found else None


def _os_version() -> str:
    if sys.platform == "win32":
        return str(sys.getwindowsversion().major)
    if sys.platform == "darwin":
        return platform.mac_ver()[0]
    return platform.release()  # uname -r


def _java(os_name: str) -> tuple[str | None, str]:
    """``(java_home, major version)``: a ``jdk-21*`` folder under ~/.auto-coder (else ~/.byzerllm)
    wins; without either folder, ``$JAVA_HOME/bin/java -version`` is asked."""
    java_home = os.environ.get("JAVA_HOME")
    home = Path.home()
    base = next((p for p in (home / ".auto-coder", home / ".byzerllm") if p.exists()), None)
    if base is not None:
        jdk = next((p for p in base.iterdir() if "jdk-21" in p.name.lower() and p.is_dir()), None)
        if jdk is None:
            return java_home, "0"
        return str(jdk / "Contents" / "Home" if os_name == "darwin" else jdk), "21"
    if not java_home:
        return None, "0"
    try:
        out = subprocess.run(
            [str(Path(java_home) / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return java_home, "0"
    m = _JAVA_VERSION.search((out.stderr or out.stdout).partition("\n")[0])
    return java_home, m.group(1) if m else "0"


def detect_env() -> EnvInfo:
    """The operating system, Python, conda/virtualenv names, bash, Java and CPU of this machine."""
    machine = platform.machine().lower()
    java_home, java_version = _java(sys.platform)
    v = sys.version_info
    return EnvInfo(
        os_name=sys.platform,
        os_version=_os_version(),
        python_version=f"{v.major}.{v.minor}.{v.micro}",
        conda_env=os.environ.get("CONDA_DEFAULT_ENV"),
        virtualenv=os.environ.get("VIRTUAL_ENV"),
        has_bash=shutil.which("bash") is not None,
        java_home=java_home,
        java_version=java_version,
        cpu="arm64" if machine in ("arm64", "aarch64") else "x86_64",
    )
