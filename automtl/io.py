"""Atomic file writes: every file automtl writes goes through :func:`atomic_write`.

A reader (or a resumed run) sees either the previous file or the complete new one, never a
half-written file, even when the process is killed mid-write: the bytes go to a temporary
file in the same folder (``.<name>.tmp<pid>``), are flushed and fsync'ed, then
``os.replace``-d over the target. A kill between the two leaves only the temporary file,
which :func:`clean_stale_temps` removes when a run (re)starts in that folder.

This module imports nothing heavy (no torch): writers that need torch pass a callback.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from automtl.errors import CheckpointError

__all__ = ["atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "clean_stale_temps", "pid_alive", "safe_load", "temp_name"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


def temp_name(path: Path) -> Path:
    """The temporary file :func:`atomic_write` uses for ``path`` in this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create ``path``'s folder, call ``write(binary_file)`` on a temporary file, fsync it and
    move it over ``path`` in one step; the temporary file never outlives a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, weights)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def safe_load(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled code ever runs); a missing,
    unreadable or non-dict file raises :class:`CheckpointError` naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: cannot be read as a safe checkpoint: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return obj


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie its parent has not reaped is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_temps(folder: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Remove temporary files left by :func:`atomic_write` in ``folder`` by processes that no
    longer run (a kill during a write); returns what was removed. Files of live processes
    (another worker writing right now) are kept."""
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for p in (root.rglob(".*.tmp*") if recursive else root.glob(".*.tmp*")):
        m = _TEMP.match(p.name)
        if m is None or not p.is_file():
            continue
        pid = int(m["pid"])
        if pid != os.getpid() and pid_alive(pid):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
