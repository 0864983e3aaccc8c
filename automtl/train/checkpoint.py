"""Checkpoints that survive a kill: atomic writes, RNG capture, safe (weights_only) loading.

Everything saved is a tensor or a plain Python container/scalar, so ``torch.load`` with its
default ``weights_only=True`` (torch >= 2.6) reads it back without allow-listing anything.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automtl.errors import CheckpointError


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to a temporary file, fsync it, then ``os.replace`` it.

    A reader (or a resumed run) sees either the previous file or the complete new one, never
    a half-written file, even when the process is killed mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def safe_load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a missing or unreadable file raises CheckpointError."""
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


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) random states as safe-to-load values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": tuples_to_lists(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(lists_to_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def tuples_to_lists(value: Any) -> Any:
    """Nested tuples as lists (RNG states in a form ``weights_only`` loading accepts)."""
    if isinstance(value, tuple):
        return [tuples_to_lists(v) for v in value]
    return value


def lists_to_tuples(value: Any) -> Any:
    """The inverse of :func:`tuples_to_lists`."""
    if isinstance(value, list):
        return tuple(lists_to_tuples(v) for v in value)
    return value


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run is reproducible from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
