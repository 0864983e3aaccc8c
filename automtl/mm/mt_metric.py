"""One evaluator for the multi-task OpenMMLab model: each task's samples go to its library's
metric, the results come back as one table plus ViT-MVT's T-Score.

``MultiTaskMetric(metrics=dict(cls=dict(type="Accuracy"), det=dict(type="CocoMetric", …),
seg=dict(type="IoUMetric", …)))`` builds each metric with its task's library registry, routes
every prediction by its ``task`` tag (set by :class:`~automtl.mm.mixed_data.MultiTaskDataset`),
and hands each metric the metainfo of its task's dataset. Results are keyed by the sample's
index in the concatenated set, so the gathering over processes drops the sampler's padding
exactly, whatever the order. Keys are those of the libraries (``accuracy/top1``,
``coco/bbox_mAP``, ``coco/segm_mAP``, ``mIoU``…) plus ``T-Score`` = top-1 + 100 · box mAP +
mIoU (all in percent, as ViT-MVT reports it) when the three are there. Samples of a task that
has no metric (``tools/test.py --eval`` keeps a subset) are passed over.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.dist import all_gather_object, broadcast_object_list, get_world_size, is_main_process
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.logging import MMLogger, print_log
from mmengine.registry import EVALUATOR, METRICS

from automtl.errors import ConfigError
from automtl.mm.mixed_data import build_in_library, task_scope

#: the main figure of each task kind, as (key suffix, factor to percent)
T_SCORE_PARTS: dict[str, tuple[str, float]] = {"cls": ("top1", 1.0), "det": ("bbox_mAP", 100.0),
                                               "seg": ("mIoU", 1.0)}
T_SCORE_KEY = "T-Score"


def t_score(metrics: Mapping[str, float]) -> float | None:
    """top-1 (%) + box mAP (× 100) + mIoU (%) from a metrics dict, or ``None`` when one is missing."""
    total = 0.0
    for suffix, factor in T_SCORE_PARTS.values():
        hits = [v for k, v in metrics.items() if k == suffix or k.endswith("/" + suffix)]
        if not hits or not _is_number(hits[0]) or not math.isfinite(float(hits[0])):
            return None
        total += factor * float(hits[0])
    return total


def _is_number(v: Any) -> bool:
    """A real number (Python or numpy scalar), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def format_table(rows: Sequence[tuple[str, str, str]]) -> str:
    """A plain text table of (task, metric, value) rows."""
    head = ("task", "metric", "value")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(3)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line, fmt(head), line, *(fmt(r) for r in rows), line])


@contextlib.contextmanager
def _quiet() -> Any:
    """Hold back the per-metric printouts (COCO summaries, per-class tables) below WARNING;
    they go to the log at DEBUG level afterwards."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    buffer = io.StringIO()
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        logger.setLevel(level)
        if buffer.getvalue():
            logger.debug(buffer.getvalue())


@METRICS.register_module()
class MultiTaskMetric(BaseMetric):
    """Routes samples by task to one metric per task and reports one table and the T-Score.

    Args:
        metrics: ``{task: metric config}`` (``type`` resolved in the task's library; a scoped
            ``"mmdet.CocoMetric"`` works too).
        scopes: the library of each task (defaults: cls → mmpretrain, det → mmdet, seg → mmseg).
        quiet: keep the metrics' own printouts out of the log's INFO level (one table instead).
        collect_device, prefix: as every mmengine metric.
    """

    default_prefix: str | None = ""  # no prefix: the task metrics' own keys

    def __init__(self, metrics: Mapping[str, Any], scopes: Mapping[str, str] | None = None, quiet: bool = True,
                 collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not isinstance(metrics, Mapping) or not metrics:
            raise ConfigError("must map each task to its metric config", key="test_evaluator.metrics",
                              value=metrics)
        self.metrics = {t: build_in_library(task_scope(t, scopes, key="test_evaluator.scopes"), "METRICS", cfg)
                        for t, cfg in metrics.items()}
        self.quiet = quiet
        self._keys: dict[str, list[Any]] = {t: [] for t in self.metrics}

    @property
    def dataset_meta(self) -> dict | None:
        """The multi-task dataset's metainfo; each task's metric gets ``meta[task]``."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict | None) -> None:
        self._dataset_meta = meta
        for task, metric in self.metrics.items():
            if meta and isinstance(meta.get(task), Mapping):
                metric.dataset_meta = dict(meta[task])

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Hand every sample to its task's metric (one call per task present in the batch)."""
        per_task: dict[str, list[tuple[int, dict]]] = {}
        for pos, sample in enumerate(data_samples):
            task = sample.get("task")
            if task in self.metrics:
                per_task.setdefault(task, []).append((pos, sample))
        for task, items in per_task.items():
            metric = self.metrics[task]
            before = len(metric.results)
            metric.process(_subset(data_batch, [p for p, _ in items]), [s for _, s in items])
            added = len(metric.results) - before
            keys = [s.get("multitask_index", None) for _, s in items]
            if added != len(items) or any(k is None for k in keys):
                keys = [None] * added  # not one result per sample: kept in order, unkeyed
            self._keys[task].extend(keys)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Every task's metrics (``results`` is unused: each task's metric holds its own)."""
        return {}

    def evaluate(self, size: int) -> dict[str, Any]:
        """Gather each task's results over processes (padding dropped by sample index), compute
        each task's metrics, log one table and the T-Score."""
        gathered = {t: self._gather(t) for t in self.metrics}
        metrics: list[Any] = [None]
        if is_main_process():
            merged: dict[str, Any] = {}
            rows: list[tuple[str, str, str]] = []
            for task, results in gathered.items():
                metric = self.metrics[task]
                if not results:
                    print_log(f"MultiTaskMetric: no {task} sample was evaluated", logger="current",
                              level=logging.WARNING)
                    continue
                with _quiet() if self.quiet else contextlib.nullcontext():
                    out = metric.compute_metrics(results)
                prefix = metric.prefix
                for k, v in out.items():
                    key = f"{prefix}/{k}" if prefix else k
                    merged[key] = v
                    if _is_number(v):
                        rows.append((task, key, f"{float(v):.4f}"))
            score = t_score(merged)
            if score is not None:
                merged[T_SCORE_KEY] = score
                rows.append(("all", T_SCORE_KEY + " (top-1 + 100·box mAP + mIoU)", f"{score:.2f}"))
            if self.prefix:
                merged = {f"{self.prefix}/{k}": v for k, v in merged.items()}
            print_log("\n" + format_table(rows), logger="current")
            metrics = [merged]
        broadcast_object_list(metrics)
        for task, metric in self.metrics.items():
            metric.results.clear()
            self._keys[task] = []
        return metrics[0]

    def _gather(self, task: str) -> list[Any]:
        """``task``'s results from every process, each sample once, in dataset order."""
        mine = list(zip(self._keys[task], _to_cpu(self.metrics[task].results)))
        parts = [mine] if get_world_size() == 1 else all_gather_object(mine)
        keyed: dict[Any, Any] = {}
        unkeyed: list[Any] = []
        for part in parts:
            for key, result in part:
                if key is None:
                    unkeyed.append(result)
                else:
                    keyed.setdefault(key, result)
        return [keyed[k] for k in sorted(keyed)] + unkeyed


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor moved to the CPU (results are gathered and kept there)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, Mapping):
        return type(obj)({k: _to_cpu(v) for k, v in obj.items()})  # type: ignore[call-arg]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _subset(data_batch: Any, positions: Sequence[int]) -> Any:
    """The entries of a collated batch at ``positions`` (lists in a dict are cut; anything else
    is handed on as it is)."""
    if isinstance(data_batch, Mapping):
        return {k: [v[i] for i in positions] if isinstance(v, list) else v for k, v in data_batch.items()}
    return data_batch


@EVALUATOR.register_module(name="MultiTaskMetric")
def multitask_evaluator(**kwargs: Any) -> Evaluator:
    """An mmengine ``Evaluator`` holding one :class:`MultiTaskMetric` (mmengine's Runner reads a
    ``val_evaluator`` dict with a ``metrics`` key as an evaluator config, so the metric's own
    config lands here)."""
    return Evaluator(MultiTaskMetric(**kwargs))
