"""Atomic file writes: every file automtl writes goes through :func:`atomic_write`.

A reader (or a resumed run) sees either the previous file or the complete new one, never a
half-written file, even when the process is killed mid-write: the bytes go to a temporary
file in the same folder (``.<name>.tmp<pid>``), are flushed and fsync'ed, then
``os.replace``-d over the target. A kill between the two leaves only the temporary file,
which :func:`clean_stale_temps` removes when a run (re)starts in that folder.

Every dict checkpoint :func:`atomic_save` writes carries a content digest under
:data:`DIGEST_KEY` (SHA-256 over the keys, scalars and tensor bytes, in order);
:func:`safe_load` recomputes it and refuses a file whose content changed on disk, then drops
the key so callers see exactly what was saved. Files without a digest load unverified.

This module imports nothing heavy at import time (torch only inside the checkpoint functions).
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from automtl.errors import CheckpointError

__all__ = ["DIGEST_KEY", "atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "clean_stale_temps", "content_digest", "pid_alive", "safe_load", "temp_name"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")

#: top-level key of a dict checkpoint that holds ``"<algorithm>:<hex digest>"`` of the rest
DIGEST_KEY = "automtl_digest"
_ALGORITHM = "sha256"
_KNOWN_ALGORITHMS = ("sha256", "blake2b")  # what a stored digest may name
_Update = Callable[[Any], object]


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
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, weights), with a content digest
    under :data:`DIGEST_KEY` when ``obj`` is a dict."""
    import torch

    saved = _with_digest(obj) if isinstance(obj, dict) else obj
    return atomic_write(path, lambda f: torch.save(saved, f))


def safe_load(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled code ever runs) and verify its
    content digest; a missing, unreadable, non-dict or corrupted file raises
    :class:`CheckpointError` naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling and zip errors come in many types
        raise CheckpointError(f"{path}: cannot be read as a safe checkpoint: "
                              f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    _verify_digest(obj, path)
    return obj


def content_digest(obj: Any, algorithm: str = _ALGORITHM) -> str:
    """``"<algorithm>:<hex>"`` over ``obj``'s content: container types and order, keys,
    scalars by ``repr``, tensors by dtype, shape and bytes (not device or storage sharing)."""
    h = hashlib.new(algorithm)
    _feed(h.update, obj)
    return f"{algorithm}:{h.hexdigest()}"


def _with_digest(obj: dict[Any, Any]) -> dict[Any, Any]:
    """A shallow copy of ``obj`` (same type and attributes) with its digest added last."""
    out = copy.copy(obj)
    out.pop(DIGEST_KEY, None)
    out[DIGEST_KEY] = content_digest(out)
    return out


def _verify_digest(obj: dict[Any, Any], path: Path) -> None:
    """Pop :data:`DIGEST_KEY` from a loaded checkpoint and check the content against it."""
    if DIGEST_KEY not in obj:
        return
    stored = obj.pop(DIGEST_KEY)
    algorithm = stored.partition(":")[0] if isinstance(stored, str) else ""
    if algorithm not in _KNOWN_ALGORITHMS:
        raise CheckpointError(f"{path}: content digest mismatch: the file is corrupted "
                              f"(unreadable digest {stored!r:.80})")
    if content_digest(obj, algorithm) != stored:
        raise CheckpointError(f"{path}: content digest mismatch: the file is corrupted "
                              "(restore it from a copy, or remove it to start over)")


def _feed(update: _Update, obj: Any) -> None:
    """Feed ``obj`` to the hash ``update`` in a form that survives a save/load round trip."""
    import torch

    if isinstance(obj, torch.Tensor):
        update(f"T{obj.dtype}{tuple(obj.shape)}|".encode())
        update(_tensor_bytes(obj))
    elif isinstance(obj, dict):
        update(f"{type(obj).__name__}{{{len(obj)}|".encode())
        for k, v in obj.items():
            _feed(update, k)
            _feed(update, v)
        attrs = getattr(obj, "__dict__", None)  # e.g. a state dict's ``_metadata``
        if attrs:
            _feed(update, attrs)
    elif isinstance(obj, (list, tuple)):
        update(f"{type(obj).__name__}[{len(obj)}|".encode())
        for v in obj:
            _feed(update, v)
    elif isinstance(obj, (set, frozenset)):
        update(f"{type(obj).__name__}({len(obj)}|".encode())
        for d in sorted(content_digest(v) for v in obj):  # set order differs between processes
            update(d.encode())
    else:
        update(f"{type(obj).__name__}:{obj!r}|".encode())


def _tensor_bytes(t: Any) -> Any:
    """The raw bytes of tensor ``t`` as a buffer (a copy only when not a dense CPU tensor)."""
    import torch

    t = t.detach()
    if t.is_meta:  # no data to hash
        return b""
    if t.is_quantized:
        t = t.int_repr()
    elif t.layout != torch.strided:
        t = t.to_dense()
    t = t.resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy()


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


def few(names: Any, limit: int = 8) -> str:
    """The first ``limit`` names and how many more there are (for error messages)."""
    names = list(names)
    return str(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _tensor_problem(key: str, own: Any, saved: Any) -> str:
    """What is wrong with ``saved`` in place of tensor ``own`` ('' when it fits or ``own`` is no tensor)."""
    import torch

    if not isinstance(own, torch.Tensor):
        return ""
    if not isinstance(saved, torch.Tensor):
        return f"'{key}' is a {type(saved).__name__} in the checkpoint but a {tuple(own.shape)} tensor in the model"
    if saved.shape != own.shape:
        return f"'{key}' is {tuple(saved.shape)} in the checkpoint but {tuple(own.shape)} in the model"
    return ""


def check_state_dict(own: Mapping[str, Any], saved: Mapping[str, Any], where: Any, *,
                     strict: bool = True, hint: str = "") -> None:
    """:class:`CheckpointError` ``"<where>: does not fit the model; …"`` naming missing and
    unexpected keys (when ``strict``) and every tensor of another shape or kind — the one
    wording of every weight-loading check (``hint`` follows "shapes differ")."""
    problems = []
    if strict:
        missing = [k for k in own if k not in saved]
        unexpected = [k for k in saved if k not in own]
        if missing:
            problems.append(f"missing keys {few(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {few(unexpected)}")
    shapes = [p for p in (_tensor_problem(k, v, saved[k]) for k, v in own.items() if k in saved) if p]
    if shapes:
        problems.append(f"shapes differ{hint}: " + "; ".join(shapes[:8]) + (" …" if len(shapes) > 8 else ""))
    if problems:
        raise CheckpointError(f"{where}: does not fit the model; " + ", ".join(problems))
