"""Multi-task dataset → per-task loaders: the one place synthetic and real sets get their
``(image, target)`` DataLoaders, so batching, shuffling and seeding mean the same for all.

A multi-task dataset here is anything with ``tasks``, ``__len__`` and ``get(index, task)``
returning ``(image, target)`` (:class:`~automtl.data.synthetic.SyntheticScenes`,
:class:`~automtl.data.real.RealDataset`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from automtl.errors import ConfigError

__all__ = ["MultiTaskDataset", "TaskView", "task_loaders"]


class MultiTaskDataset(Protocol):
    """What :class:`TaskView` needs of a dataset."""

    tasks: tuple[str, ...]

    def __len__(self) -> int: ...

    def get(self, index: int, task: str) -> tuple[torch.Tensor, torch.Tensor]: ...


class TaskView(Dataset):
    """One task of a multi-task dataset: item ``i`` is ``(image, target)``."""

    def __init__(self, dataset: MultiTaskDataset, task: str) -> None:
        if task not in dataset.tasks:
            raise ConfigError(f"dataset has tasks {list(dataset.tasks)}", key=task)
        self.dataset = dataset
        self.task = task

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.get(index, self.task)


def task_loaders(train: MultiTaskDataset, val: MultiTaskDataset, tasks: Sequence[str] | None = None, *,
                 batch_size: int, seed: int = 0, num_workers: int = 0
                 ) -> tuple[dict[str, DataLoader], dict[str, DataLoader]]:
    """``(train_loaders, val_loaders)`` keyed by task: train shuffles with a generator seeded by
    ``(seed, task position)`` and drops the last partial batch; val keeps order and every sample."""
    tasks = tuple(train.tasks if tasks is None else tasks)
    if not tasks:
        raise ConfigError("at least one task is required", key="tasks")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("must be an integer >= 1", key="batch_size", value=batch_size)
    if len(train) < batch_size:
        raise ConfigError(f"the train split has {len(train)} samples, fewer than one batch; "
                          "the train loaders would be empty", key="batch_size", value=batch_size)
    train_loaders: dict[str, DataLoader] = {}
    val_loaders: dict[str, DataLoader] = {}
    for k, task in enumerate(tasks):
        gen = torch.Generator().manual_seed(int(seed) * 1000 + k)
        train_loaders[task] = DataLoader(TaskView(train, task), batch_size=batch_size, shuffle=True,
                                         drop_last=True, generator=gen, num_workers=num_workers)
        val_loaders[task] = DataLoader(TaskView(val, task), batch_size=batch_size, shuffle=False,
                                       drop_last=False, num_workers=num_workers)
    return train_loaders, val_loaders
