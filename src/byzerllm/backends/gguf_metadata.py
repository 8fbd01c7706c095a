"""Read key/value metadata from a GGUF file's header without loading the model.

GGUF (llama.cpp's model format, versions 2 and 3, little-endian) starts with ``GGUF``, a
uint32 version, uint64 tensor and key/value counts, then the key/value pairs: a string key
(uint64 length + UTF-8 bytes), a uint32 value type and the value. Only the header is read
(memory-mapped, ~30 ms for a 49k-token vocabulary); the tensors are not touched.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable
from typing import Any

# GGUF value type -> struct format of a scalar (gguf.h ``enum gguf_type``)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: str, keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` present in the GGUF file at ``path``: scalars as int / float /
    bool, strings as str; arrays are skipped. A key the file lacks is absent from the result.

    Raises ``ValueError`` when the file is not GGUF v2/v3 or its header is cut short.
    """
    wanted = set(keys)
    out: dict[str, Any] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
        if version not in (2, 3):
            raise ValueError(f"{path} is GGUF version {version}; versions 2 and 3 are read")
        pos = 24
        try:
            for _ in range(n_kv):
                key, pos = _string(m, pos)
                (kind,) = struct.unpack_from("<I", m, pos)
                pos += 4
                if key in wanted and kind in _SCALARS:
                    out[key] = struct.unpack_from(_SCALARS[kind], m, pos)[0]
                elif key in wanted and kind == _STRING:
                    out[key] = _string(m, pos)[0]
                if len(out) == len(wanted):
                    break
                pos = _skip(m, kind, pos)
        except struct.error:
            raise ValueError(f"{path}: the GGUF header is cut short") from None
    return out


def _string(m: mmap.mmap, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", m, pos)
    end = pos + 8 + n
    if end > len(m):
        raise struct.error("string past the end of the file")
    return m[pos + 8 : end].decode("utf-8", errors="replace"), end


def _skip(m: mmap.mmap, kind: int, pos: int) -> int:
    """The position after a value of type ``kind`` at ``pos``."""
    if kind in _SCALARS:
        return pos + struct.calcsize(_SCALARS[kind])
    if kind == _STRING:
        (n,) = struct.unpack_from("<Q", m, pos)
        return pos + 8 + n
    if kind == _ARRAY:
        sub, count = struct.unpack_from("<IQ", m, pos)
        pos += 12
        if sub in _SCALARS:
            return pos + struct.calcsize(_SCALARS[sub]) * count
        for _ in range(count):
            pos = _skip(m, sub, pos)
        return pos
    raise struct.error(f"unknown GGUF value type {kind}")
