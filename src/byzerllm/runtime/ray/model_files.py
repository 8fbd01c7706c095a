"""Model files that reach every worker's node through Ray's object store, cached there by SHA-256.

A deployment whose ``model_path`` is a file or folder on the deploying machine works on a cluster
without a shared filesystem: ``pack`` reads it into the object store in chunks (``CHUNK_BYTES``),
the pool actor keeps the chunks for the life of the deployment (so a worker restarted on another
node later finds them), and each worker calls ``materialize``, which writes the files once per
node into the model cache and reuses them afterwards. The cache folder is ``$BYZERLLM_MODEL_CACHE``
(``byzerllm cluster join --model_cache``) or ``~/.cache/byzerllm/models`` (created private to its
user); an entry is ``<sha256>/<name>``, written under a temporary name by one worker of the node at
a time (the others wait on the entry's lock and reuse it) and renamed once its digest matched.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DeploymentError

log = logging.getLogger("byzerllm.runtime")
#: Bytes per object-store chunk: big enough that per-object costs vanish, small enough that
#: neither side holds a whole multi-gigabyte model in memory.
CHUNK_BYTES = 64 * 1024 * 1024
CACHE_ENV = "BYZERLLM_MODEL_CACHE"


def cache_dir() -> Path:
    """This node's model cache: ``$BYZERLLM_MODEL_CACHE`` or ``~/.cache/byzerllm/models``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "byzerllm" / "models").expanduser()


@dataclass
class ModelFiles:
    """A model file or folder in the object store. ``files`` maps each relative path (``""`` for a
    single file) to the ``ObjectRef`` of its chunks; ``sha256`` is the digest of the content (a
    file's bytes; for a folder, of each file's relative path and digest in order)."""

    name: str
    sha256: str
    size: int
    is_dir: bool
    files: dict[str, list[Any]] = field(default_factory=dict)

    def describe(self) -> str:
        """``name (size MB, sha256 prefix)`` for messages."""
        return f"{self.name} ({self.size / 1e6:.1f} MB, sha256 {self.sha256[:12]})"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _listing(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [("", root)]
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())


def digest(root: Path) -> str:
    """The SHA-256 that names ``root`` in the cache (see ``ModelFiles``)."""
    listing = _listing(root)
    if root.is_file():
        return _file_sha256(root)
    h = hashlib.sha256()
    for rel, path in listing:
        h.update(f"{rel}\0{_file_sha256(path)}\n".encode())
    return h.hexdigest()


def local_model(model_path: str) -> Path | None:
    """The file or folder ``model_path`` names on this machine, or None (``builtin:`` names, SaaS
    model names, paths that are not here: those resolve on each node)."""
    if not model_path or model_path.startswith("builtin:") or "://" in model_path:
        return None
    path = Path(model_path).expanduser()
    return path.resolve() if path.exists() else None


def to_ship(model_path: str, alive_nodes: int) -> Path | None:
    """The file or folder of ``model_path`` to send to the workers' nodes, or None: only on a
    cluster of several nodes (one node reads the path itself) and only for a local path."""
    return local_model(model_path) if alive_nodes > 1 else None


def size_of(root: Path) -> int:
    """Bytes of ``root``, a file or every file under a folder."""
    return sum(path.stat().st_size for _, path in _listing(root))


def pack(root: Path, put) -> ModelFiles:
    """Read ``root`` (a file or folder) into the object store with ``put`` (``ray.put``), chunk by
    chunk, digesting it on the way (one read). Raises ``OSError`` when it cannot be read."""
    files: dict[str, list[Any]] = {}
    size = 0
    folder = hashlib.sha256()
    for rel, path in _listing(root):
        refs = []
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                h.update(chunk)
                refs.append(put(chunk))
                size += len(chunk)
        files[rel] = refs
        folder.update(f"{rel}\0{h.hexdigest()}\n".encode())
    sha = h.hexdigest() if root.is_file() else folder.hexdigest()
    return ModelFiles(root.name, sha, size, root.is_dir(), files)


def materialize(files: ModelFiles, get) -> str:
    """The path of ``files`` in this node's cache, written from the object store (``get``:
    ``ray.get``) when it is not there yet. One worker of a node writes an entry while the others
    wait for it; the digest is checked before the entry appears, so a worker killed mid-copy leaves
    no half-written model (its temporary copy is removed by the next writer). Raises
    ``DeploymentError`` when the copy does not match its digest or the cache cannot be written."""
    entry = cache_dir() / files.sha256
    target = entry / files.name
    if target.exists():
        return str(target)
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry.mkdir(mode=0o700, exist_ok=True)
        with (entry / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            if target.exists():  # another worker of this node wrote it meanwhile
                return str(target)
            for stale in entry.glob(".partial-*"):  # left by a writer that died
                shutil.rmtree(stale, ignore_errors=True)
            _write(files, get, entry, target)
    except OSError as exc:
        raise DeploymentError(
            f"cannot write model files {files.describe()} to the model cache {entry}: {exc}"
        ) from None
    log.info("model files %s cached at %s", files.describe(), target)
    return str(target)


def _write(files: ModelFiles, get, entry: Path, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=entry))
    try:
        out = tmp / files.name
        if files.is_dir:
            out.mkdir()
        for rel, refs in files.files.items():
            dest = out / rel if rel else out
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as f:
                for ref in refs:
                    f.write(get(ref))
        if digest(out) != files.sha256:
            raise DeploymentError(f"model files {files.describe()} arrived corrupted on this node")
        out.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
