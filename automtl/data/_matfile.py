"""Minimal reader of MATLAB level-5 ``.mat`` files (no scipy needed).

Enough for PASCAL-Context's ``LabelMap`` and human-part annotations: numeric and logical
arrays become numpy arrays, strings ``str``, cell arrays lists, struct arrays lists of
``{field: value}`` dicts (column-major order). Compressed (``miCOMPRESSED``) and plain
elements and both byte orders are understood; sparse and object arrays are skipped.
"""
from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from automtl.errors import DataError

_MI = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED, _MI_UTF8 = 14, 15, 16
_NUMERIC_CLASSES = {6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
_CELL, _STRUCT, _CHAR = 1, 2, 4
_SKIP = object()


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


def _matrix(payload: bytes, endian: str, path: str) -> tuple[str, object]:
    """``(name, value)`` of one miMATRIX payload; value is ``_SKIP`` for unsupported classes."""
    if not payload:
        return "", np.zeros((0, 0))
    parts = list(_elements(payload, endian, path))
    if len(parts) < 3:
        raise DataError(f"{path}: malformed .mat matrix")
    flags = np.frombuffer(parts[0][1], dtype=endian + "u4")
    cls = int(flags[0]) & 0xFF
    dims = tuple(int(d) for d in np.frombuffer(parts[1][1], dtype=endian + _MI[parts[1][0]]))
    name = parts[2][1].decode("latin-1")
    count = int(np.prod(dims))
    if cls == _CELL:
        return name, [_matrix(p, endian, path)[1] for _, p in parts[3:3 + count]]
    if cls == _STRUCT:
        width = int(np.frombuffer(parts[3][1], dtype=endian + "i4")[0])
        raw = parts[4][1]
        fields = [raw[i:i + width].split(b"\0")[0].decode("latin-1") for i in range(0, len(raw), width)]
        values = [_matrix(p, endian, path)[1] for _, p in parts[5:]]
        if len(values) != count * len(fields):
            raise DataError(f"{path}: struct '{name}' holds {len(values)} values for {count}x{len(fields)}")
        return name, [dict(zip(fields, values[i * len(fields):(i + 1) * len(fields)])) for i in range(count)]
    if cls == _CHAR:
        if len(parts) < 4:
            return name, ""
        typ, data = parts[3]
        if typ == _MI_UTF8:
            return name, data.decode("utf-8")
        codes = np.frombuffer(data, dtype=endian + _MI[typ]).reshape(dims, order="F")
        return name, "".join(chr(c) for c in codes.ravel(order="C"))
    if cls not in _NUMERIC_CLASSES:
        return name, _SKIP
    if len(parts) < 4:
        return name, np.zeros(dims)
    typ, data = parts[3]
    if typ not in _MI:
        raise DataError(f"{path}: unsupported .mat data type {typ} in '{name}'")
    arr = np.frombuffer(data, dtype=endian + _MI[typ])
    if arr.size != count:
        raise DataError(f"{path}: '{name}' has {arr.size} values for dimensions {dims}")
    return name, arr.reshape(dims, order="F").astype(arr.dtype.newbyteorder("="))


def read_mat(path: str | os.PathLike) -> dict[str, Any]:
    """Variables of a level-5 ``.mat`` file by name (see the module docs for the types)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        raise DataError(f"missing file: {path}") from None
    if len(buf) < 128 or buf[:6] == b"\x89HDF\r\n" or buf[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a MATLAB level-5 .mat file (v7.3/HDF5 files are not read)")
    endian = "<" if buf[126:128] == b"IM" else ">"
    out: dict[str, Any] = {}
    for typ, payload in _elements(buf[128:], endian, path):
        if typ == _MI_COMPRESSED:
            try:
                inner = zlib.decompress(payload)
            except zlib.error as e:
                raise DataError(f"{path}: corrupt compressed .mat element: {e}") from None
            for t2, p2 in _elements(inner, endian, path):
                if t2 == _MI_MATRIX:
                    name, value = _matrix(p2, endian, path)
                    if value is not _SKIP:
                        out[name] = value
        elif typ == _MI_MATRIX:
            name, value = _matrix(payload, endian, path)
            if value is not _SKIP:
                out[name] = value
    return out
