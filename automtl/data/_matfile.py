"""Minimal reader of MATLAB level-5 ``.mat`` files: numeric matrices only (no scipy needed).

Enough for PASCAL-Context's ``LabelMap`` files. Structs, cells and strings are skipped;
compressed (``miCOMPRESSED``) and plain elements, both byte orders, are understood.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from automtl.errors import DataError

_MI = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_NUMERIC_CLASSES = {6, 7, 8, 9, 10, 11, 12, 13, 14, 15}


def _elements(buf: bytes, endian: str, path: str):
    """Yield ``(type, payload)`` of the data elements in ``buf``."""
    pos = 0
    while pos + 8 <= len(buf):
        first, second = struct.unpack_from(endian + "II", buf, pos)
        if first >> 16:  # small data element: 2-byte size, 2-byte type, 4 bytes of data
            typ, size = first & 0xFFFF, first >> 16
            yield typ, buf[pos + 4:pos + 4 + size]
            pos += 8
            continue
        typ, size = first, second
        start = pos + 8
        if start + size > len(buf):
            raise DataError(f"{path}: truncated .mat element (type {typ}, {size} bytes)")
        yield typ, buf[start:start + size]
        pos = start + size
        if typ != _MI_COMPRESSED:
            pos += (-size) % 8


def _matrix(payload: bytes, endian: str, path: str) -> tuple[str, np.ndarray] | None:
    parts = list(_elements(payload, endian, path))
    if len(parts) < 3:
        raise DataError(f"{path}: malformed .mat matrix")
    flags = np.frombuffer(parts[0][1], dtype=endian + "u4")
    cls = int(flags[0]) & 0xFF
    dims = tuple(int(d) for d in np.frombuffer(parts[1][1], dtype=endian + _MI[parts[1][0]]))
    name = parts[2][1].decode("latin-1")
    if cls not in _NUMERIC_CLASSES or len(parts) < 4:
        return None
    typ, data = parts[3]
    if typ not in _MI:
        raise DataError(f"{path}: unsupported .mat data type {typ} in '{name}'")
    arr = np.frombuffer(data, dtype=endian + _MI[typ])
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path}: '{name}' has {arr.size} values for dimensions {dims}")
    return name, arr.reshape(dims, order="F").astype(arr.dtype.newbyteorder("="))


def read_mat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Numeric arrays of a level-5 ``.mat`` file by name (other variables are skipped)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        raise DataError(f"missing file: {path}") from None
    if len(buf) < 128 or buf[:6] == b"\x89HDF\r\n" or buf[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a MATLAB level-5 .mat file (v7.3/HDF5 files are not read)")
    endian = "<" if buf[126:128] == b"IM" else ">"
    out: dict[str, np.ndarray] = {}
    for typ, payload in _elements(buf[128:], endian, path):
        if typ == _MI_COMPRESSED:
            try:
                inner = zlib.decompress(payload)
            except zlib.error as e:
                raise DataError(f"{path}: corrupt compressed .mat element: {e}") from None
            for t2, p2 in _elements(inner, endian, path):
                if t2 == _MI_MATRIX:
                    got = _matrix(p2, endian, path)
                    if got:
                        out[got[0]] = got[1]
        elif typ == _MI_MATRIX:
            got = _matrix(payload, endian, path)
            if got:
                out[got[0]] = got[1]
    return out
