"""Data builders in :data:`automtl.registry.DATASETS` and :func:`build_data`, the one way a
config's ``data`` section becomes loaders.

A data builder takes the task list first and returns ``(train_loaders, val_loaders)``, dicts
keyed by task of ``(image, target)`` batches. ``synthetic`` renders the built-in scenes; the
real sets (``CityScapes``, ``NYUv2``, ``Taskonomy``, ``NYUD``, ``PascalContext``) read their
own on-disk formats under ``data_root`` (:mod:`automtl.data.real`)::

    data = dict(type="NYUv2", data_root="data/NYUv2", crop=321, scale=(0.5, 1.5), batch_size=16)
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader

from automtl.data.real import REAL_SETS, RealDataset, real_loaders
from automtl.data.synthetic import make_loaders
from automtl.registry import DATASETS, build

Loaders = tuple[dict[str, DataLoader], dict[str, DataLoader]]

DATASETS.register_module("synthetic", module=make_loaders)


def _real_builder(cls: type[RealDataset]) -> Callable[..., Loaders]:
    """The data builder of one real set: an explicit signature, so the registry refuses unknown keys."""

    def builder(tasks: Sequence[str], *, data_root: str | os.PathLike, batch_size: int = 16,
                size: int | Sequence[int] | None = None, val_size: int | Sequence[int] | None = None,
                crop: int | Sequence[int] | None = None, scale: Sequence[float] | None = None,
                flip: bool = True, seed: int = 0, train_split: str = "train", val_split: str | None = None,
                num_workers: int = 0, check: str = "first", encoding: str = "standard") -> Loaders:
        return real_loaders(cls, tasks, data_root=data_root, batch_size=batch_size, size=size,
                            val_size=val_size, crop=crop, scale=scale, flip=flip, seed=seed,
                            train_split=train_split, val_split=val_split, num_workers=num_workers,
                            check=check, encoding=encoding)

    builder.__name__ = builder.__qualname__ = cls.__name__
    builder.__doc__ = f"Per-task loaders of {cls.__name__} under ``data_root`` ({cls.__doc__})"
    return builder


for _cls in REAL_SETS.values():
    DATASETS.register_module(_cls.__name__, module=_real_builder(_cls))


def build_data(cfg: Mapping[str, Any] | None, tasks: Sequence[str], *, seed: int = 0,
               key: str = "data") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(train_loaders, val_loaders)`` for ``tasks`` from ``dict(type=NAME, **settings)``
    (``type`` defaults to ``synthetic``; ``seed`` fills the builder's seed unless set)."""
    spec = {"type": "synthetic", **dict(cfg or {})}
    return build(DATASETS, spec, list(tasks), key=key, seed=seed)
