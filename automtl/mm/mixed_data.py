"""Batches mixed from one dataset per task, for the multi-task OpenMMLab model.

:class:`MultiTaskDataset` concatenates an mmpretrain, an mmdet and an mmseg dataset (each built
by its own library's registry, its pipeline in its own scope) and tags every sample's data
sample with ``task`` (and ``multitask_index``, its index in the concatenation).
:class:`MultiTaskBatchSampler` fills every batch with a fixed number of samples per task (in
the spirit of ViT-MVT's multi-source sampling): it reads any index sampler (mmengine's
``InfiniteSampler`` for iteration-based training: shuffling, seeding and the split over
processes stay the sampler's job) and puts each index into its task's bucket; an index whose
task's share of the batch is already full is passed over (with a shuffled infinite sampler it
comes again in a later round, so each task is sampled uniformly from its own dataset).
"""
from __future__ import annotations

import bisect
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from mmengine.registry import DATA_SAMPLERS, DATASETS, DefaultScope
from torch.utils.data import BatchSampler, Dataset, Sampler

from automtl.errors import ConfigError, DataError
from automtl.mm.scopes import MM_SCOPES

#: the library whose registry builds a task's dataset, model and metric, by task name
DEFAULT_TASK_SCOPES: dict[str, str] = {"cls": "mmpretrain", "det": "mmdet", "seg": "mmseg"}


def task_scope(task: str, scopes: Mapping[str, str] | None = None, *, key: str = "scopes") -> str:
    """The OpenMMLab scope of ``task`` (``scopes`` first, then :data:`DEFAULT_TASK_SCOPES`)."""
    scope = (scopes or {}).get(task) or DEFAULT_TASK_SCOPES.get(task)
    if scope not in MM_SCOPES:
        raise ConfigError(f"no OpenMMLab scope for task {task!r}: name it in {key} "
                          f"(one of {sorted(MM_SCOPES)})", key=key, value=scope)
    return scope


def build_in_library(scope: str, registry: str, cfg: Any) -> Any:
    """Build ``cfg`` with the ``registry`` (``"DATASETS"``, ``"METRICS"``…) of library ``scope``,
    with that library as the default scope (its pipelines' transforms resolve there)."""
    if not isinstance(cfg, Mapping):
        return cfg
    reg = getattr(importlib.import_module(MM_SCOPES[scope]), registry)
    with DefaultScope.overwrite_default_scope(scope):
        return reg.build(dict(cfg))


@DATASETS.register_module()
class MultiTaskDataset(Dataset):
    """One dataset per task, concatenated; every sample's data sample carries its ``task``.

    Args:
        datasets: ``{task: dataset config or dataset}`` (e.g. ``cls=dict(type="CustomDataset",
            …)``, ``det=dict(type="CocoDataset", …)``, ``seg=dict(type="ADE20KDataset", …)``).
        scopes: the library of each task (defaults: cls → mmpretrain, det → mmdet,
            seg → mmseg).
    """

    def __init__(self, datasets: Mapping[str, Any], scopes: Mapping[str, str] | None = None) -> None:
        if not isinstance(datasets, Mapping) or not datasets:
            raise ConfigError("must map each task to its dataset", key="dataset.datasets", value=datasets)
        self.tasks = tuple(datasets)
        self.datasets = {t: build_in_library(task_scope(t, scopes, key="dataset.scopes"), "DATASETS", cfg)
                         for t, cfg in datasets.items()}
        self.sizes = {t: len(ds) for t, ds in self.datasets.items()}
        empty = [t for t, n in self.sizes.items() if n == 0]
        if empty:
            raise DataError(f"the dataset of task(s) {empty} holds no sample (check its data root and "
                            "annotation file)")
        self.offsets: list[int] = []
        total = 0
        for t in self.tasks:
            self.offsets.append(total)
            total += self.sizes[t]
        self.total = total

    @property
    def metainfo(self) -> dict[str, Any]:
        """``tasks``, ``task_sizes`` and, under each task's name, its dataset's metainfo (what
        :class:`~automtl.mm.mt_metric.MultiTaskMetric` hands to each task's metric)."""
        meta: dict[str, Any] = {"tasks": self.tasks, "task_sizes": dict(self.sizes)}
        for t, ds in self.datasets.items():
            meta[t] = dict(getattr(ds, "metainfo", {}) or {})
        return meta

    def __len__(self) -> int:
        return self.total

    def task_of(self, index: int) -> str:
        """The task of the sample at ``index``."""
        return self.tasks[bisect.bisect_right(self.offsets, index) - 1]

    def locate(self, index: int) -> tuple[str, int]:
        """``(task, index in that task's dataset)``."""
        if not 0 <= index < self.total:
            raise IndexError(f"index {index} outside the {self.total} samples")
        k = bisect.bisect_right(self.offsets, index) - 1
        return self.tasks[k], index - self.offsets[k]

    def __getitem__(self, index: int) -> dict[str, Any]:
        task, local = self.locate(index)
        sample = self.datasets[task][local]
        if not isinstance(sample, dict) or "data_samples" not in sample:
            raise DataError(f"the {task} dataset's pipeline must end with its library's Pack*Inputs "
                            f"transform (got {type(sample).__name__} without data_samples)")
        sample["data_samples"].set_metainfo({"task": task, "multitask_index": index})
        return sample


@DATA_SAMPLERS.register_module()
class MultiTaskBatchSampler(BatchSampler):
    """Batches holding ``shares[task]`` samples of each task (task order of the dataset).

    Args:
        sampler: an index sampler over a :class:`MultiTaskDataset` (mmengine builds it from the
            dataloader's ``sampler`` and passes it in).
        batch_size: samples per batch on each process (the dataloader's ``batch_size``).
        shares: ``{task: samples per batch}``, summing to ``batch_size``; default: an even split.
        drop_last: drop the last, incomplete batch of a finite sampler.
    """

    def __init__(self, sampler: Sampler, batch_size: int, shares: Mapping[str, int] | None = None,
                 drop_last: bool = False) -> None:
        dataset = getattr(sampler, "dataset", None)
        if not isinstance(dataset, MultiTaskDataset):
            raise ConfigError("MultiTaskBatchSampler needs a sampler over a MultiTaskDataset "
                              f"(got {type(dataset).__name__})", key="train_dataloader.dataset")
        tasks = dataset.tasks
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < len(tasks):
            raise ConfigError(f"must be an integer of at least one sample per task ({len(tasks)})",
                              key="train_dataloader.batch_size", value=batch_size)
        if shares is None:
            shares = {t: batch_size // len(tasks) + (i < batch_size % len(tasks)) for i, t in enumerate(tasks)}
        shares = dict(shares)
        if sorted(shares) != sorted(tasks):
            raise ConfigError(f"must name exactly the dataset's tasks {list(tasks)}",
                              key="batch_sampler.shares", value=shares)
        bad = {t: n for t, n in shares.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1}
        if bad:
            raise ConfigError("each share must be a positive integer (samples of that task per batch)",
                              key="batch_sampler.shares", value=bad)
        if sum(shares.values()) != batch_size:
            raise ConfigError(f"the shares add up to {sum(shares.values())}, not the batch size {batch_size}",
                              key="batch_sampler.shares", value=shares)
        self.sampler, self.dataset = sampler, dataset
        self.batch_size, self.drop_last = batch_size, drop_last
        self.shares = {t: shares[t] for t in tasks}

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[str, list[int]] = {t: [] for t in self.shares}
        full = 0
        for index in self.sampler:
            task = self.dataset.task_of(index)
            bucket = buckets[task]
            if len(bucket) >= self.shares[task]:
                continue
            bucket.append(index)
            full += len(bucket) == self.shares[task]
            if full == len(buckets):
                yield [i for t in self.shares for i in buckets[t]]
                buckets = {t: [] for t in self.shares}
                full = 0
        rest = [i for t in self.shares for i in buckets[t]]
        if rest and not self.drop_last:
            yield rest

    def __len__(self) -> int:
        """Full batches one pass of the sampler gives (its share of each task's samples)."""
        fraction = len(self.sampler) / max(len(self.dataset), 1)  # type: ignore[arg-type]
        return max(min(int(self.dataset.sizes[t] * fraction) // n for t, n in self.shares.items()), 1)
