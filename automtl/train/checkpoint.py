"""Checkpoints that survive a kill: RNG capture and restore (writes and safe loading are
:func:`automtl.io.atomic_save` / :func:`automtl.io.safe_load`).

Everything saved is a tensor or a plain Python container/scalar, so ``torch.load`` with its
default ``weights_only=True`` (torch >= 2.6) reads it back without allow-listing anything.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from automtl.io import atomic_save, safe_load

__all__ = ["atomic_save", "lists_to_tuples", "rng_state", "safe_load", "seed_everything",
           "set_rng_state", "tuples_to_lists"]


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) random states as safe-to-load values."""
    np_state: Any = np.random.get_state()
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
    """Restore what :func:`rng_state` captured (wherever a checkpoint's ``map_location`` put
    the state tensors: the generators take CPU tensors)."""
    random.setstate(lists_to_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
