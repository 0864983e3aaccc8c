"""Endless, resumable, rank-sharded batch streams over the task loaders.

A :class:`TaskStream` keeps the dataset, batch size and collate function of a user's
``DataLoader`` but owns the order: each epoch is a permutation drawn from ``(seed, epoch)``,
so the stream's whole state is two integers (epoch, batches consumed). That is what makes
``resume`` reach the same weights as an uninterrupted run, and what lets every rank of a
distributed run take its own slice of the same global batch.

:func:`phase_streams` builds a trainer phase's streams, :func:`weight_policy_split` the
disjoint weight/policy parts of the alternating phase, and :func:`resumable_stream` a stream
for any iterable (a :class:`CycleStream`, without a position, when it is no ``DataLoader``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any, cast

import torch
from torch.utils.data import DataLoader

from automtl.errors import CheckpointError, ConfigError

#: per-split seed offsets: the pre/post-train stream, and the weight and policy parts of the
#: alternating phase draw different orders from one run seed
SPLIT_SEEDS = {"train": 0, "weights": 1, "policy": 2}


class TaskStream:
    """Batches of one task's loader, forever; ``state_dict`` / ``load_state_dict`` resume it.

    ``loader.batch_size`` is the *global* batch: with ``world`` ranks, rank ``r`` receives
    the ``r``-th of ``world`` equal slices of every global batch. ``indices`` restricts the
    stream to a subset of the dataset (e.g. the weight or the policy split).
    """

    def __init__(self, loader: DataLoader, *, seed: int, indices: Sequence[int] | None = None,
                 rank: int = 0, world: int = 1, shuffle: bool = True, name: str = "") -> None:
        self.dataset = loader.dataset
        self.collate_fn = loader.collate_fn
        self.num_workers = loader.num_workers
        self.indices = list(range(len(cast(Sized, self.dataset)))) if indices is None else list(indices)
        if not self.indices:
            raise ConfigError(f"the loader of task '{name}' has no samples", key=name or None)
        batch = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None) or 1
        self.batch_size = min(batch, len(self.indices))
        if self.batch_size % world:
            raise ConfigError(f"global batch {self.batch_size} of task '{name}' does not split over "
                              f"{world} processes; use a multiple of {world}", key=name or None)
        self.seed, self.rank, self.world, self.shuffle, self.name = seed, rank, world, shuffle, name
        self.epoch = 0
        self.position = 0  # batches consumed in the current epoch
        self._iter: Iterator[Any] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's index lists for ``epoch`` (full global batches only)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = [self.indices[i] for i in torch.randperm(len(self.indices), generator=g).tolist()]
        else:
            order = list(self.indices)
        b = self.batch_size
        per = b // self.world
        glob = [order[i:i + b] for i in range(0, len(order) - b + 1, b)]
        return [g_[self.rank * per:(self.rank + 1) * per] for g_ in glob]

    def __len__(self) -> int:
        return len(self.indices) // self.batch_size

    def _open(self) -> None:
        batches = self.epoch_batches(self.epoch)[self.position:]
        # A private generator: creating a loader iterator draws a worker base seed, which must
        # not consume the global RNG (Gumbel noise, dropout) at a point that differs on resume.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7 + self.position)
        self._iter = iter(DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate_fn,
                                     num_workers=self.num_workers, generator=gen))

    def next(self) -> Any:
        """The next batch (rolls over to a new epoch when one ends)."""
        if self._iter is None:
            self._open()
        try:
            batch = next(self._iter)  # type: ignore[arg-type]
        except StopIteration:
            self.epoch += 1
            self.position = 0
            self._open()
            batch = next(self._iter)  # type: ignore[arg-type]
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """The stream position: epoch and batches consumed in it."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict` position (the next batch is the one that followed)."""
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._iter = None


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` at random into two disjoint parts: ``(weights, policy)``.

    ``fraction`` of the samples go to the policy part (at least one sample each side).
    """
    if n < 2:
        raise ConfigError(f"cannot split {n} sample(s) into weight and policy parts", key="policy_split")
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    perm = torch.randperm(n, generator=g).tolist()
    k = min(max(1, int(round(n * fraction))), n - 1)
    return sorted(perm[k:]), sorted(perm[:k])


def phase_streams(loaders: Mapping[str, DataLoader], tasks: Sequence[str], split: str, *, seed: int,
                  indices: Mapping[str, Sequence[int]] | None = None, rank: int = 0,
                  world: int = 1) -> dict[str, TaskStream]:
    """One stream per task for a phase's data ``split`` (``train``, ``weights`` or ``policy``);
    seeds differ per split and task so the streams never move in lock-step."""
    offset = SPLIT_SEEDS[split]
    return {task: TaskStream(loaders[task], seed=seed * 101 + offset * 13 + i,
                             indices=None if indices is None else indices.get(task),
                             rank=rank, world=world, name=task)
            for i, task in enumerate(tasks)}


def weight_policy_split(loaders: Mapping[str, DataLoader], tasks: Sequence[str], fraction: float,
                        seed: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Per task, disjoint sample indices for weight steps and policy steps (:func:`split_indices`)."""
    weights, policy = {}, {}
    for i, task in enumerate(tasks):
        weights[task], policy[task] = split_indices(len(cast(Sized, loaders[task].dataset)), fraction, seed + i)
    return weights, policy


class CycleStream:
    """Batches of a plain iterable, forever; it has no position to resume (a
    :class:`TaskStream` does), so only a checkpoint without one loads."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self._it = _cycle(loader)

    def next(self) -> Any:
        """The next batch (the iterable starts over when it ends)."""
        return next(self._it)

    def state_dict(self) -> None:
        """Nothing: a plain iterable cannot be resumed mid-way."""
        return None

    def load_state_dict(self, state: Any) -> None:
        """Accept only the empty position this stream writes."""
        if state is not None:
            raise CheckpointError("the checkpoint holds a data position but the loader is not a "
                                  "DataLoader")


def resumable_stream(loader: Iterable[Any], *, seed: int, name: str = "") -> TaskStream | CycleStream:
    """A :class:`TaskStream` over a ``DataLoader``, a :class:`CycleStream` over any other iterable."""
    if isinstance(loader, DataLoader):
        return TaskStream(loader, seed=seed, name=name)
    return CycleStream(loader)


def _cycle(loader: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ConfigError("a training loader yields no batch", key="train_loaders")
