"""Δm: multi-task performance relative to single-task baselines, in three named variants.

For every task t and metric k: ``r_{t,k} = (-1)^{l_k} (M_{t,k} - B_{t,k}) / B_{t,k} * 100`` with
``l_k = 1`` when lower is better, so positive means better than the baseline.

- ``maninis`` (Maninis et al. 2019 / Vandenhende et al. 2021): mean over tasks of
  ``r_{t,primary(t)}``, one primary metric per task (mIoU, depth RMSE, normal mean error,
  edge odsF, saliency maxF, ...).
- ``all_metrics``: mean of ``r_{t,k}`` over every (task, metric) pair of the baseline.
- ``task_balanced``: mean over tasks of the per-task mean over that task's metrics, so a
  task with many metrics weighs as much as a task with one.

A baseline file is JSON:
``{"format": "automtl-baseline/1", "metrics": {task: {metric: value}},
"higher_is_better": {task: {metric: bool}}, "primary": {task: metric}, "meta": {...}}``.
``load_baseline`` also reads a bare ``{task: {metric: value}}`` (or ``{"metrics": ...}``)
file, taking directions and primary metrics from each task's default metric.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automtl.errors import ConfigError
from automtl.io import atomic_write_text

__all__ = ["VARIANTS", "Baseline", "default_directions", "relative_diffs", "delta_m", "delta_m_all", "save_baseline",
           "load_baseline"]

VARIANTS: tuple[str, ...] = ("maninis", "all_metrics", "task_balanced")
_FORMAT = "automtl-baseline/1"

Results = Mapping[str, Mapping[str, float]]


def default_directions(tasks: Iterable[str]) -> tuple[dict[str, dict[str, bool]], dict[str, str]]:
    """``higher_is_better`` and ``primary`` of the default metric of each task."""
    from automtl.metrics import metric_for_task

    hib, primary = {}, {}
    for task in tasks:
        m = metric_for_task(task, num_classes=2)
        hib[task], primary[task] = dict(m.higher_is_better), m.primary
    return hib, primary


def relative_diffs(results: Results, baseline: Results,
                   higher_is_better: Mapping[str, Mapping[str, bool]] | None = None
                   ) -> dict[str, dict[str, float]]:
    """Signed relative difference in percent per task and baseline metric (positive = better).

    ``higher_is_better`` defaults to the directions of each task's default metric.
    """
    if higher_is_better is None:
        higher_is_better = default_directions(results)[0]
    out: dict[str, dict[str, float]] = {}
    for task in results:
        if task not in baseline:
            raise ConfigError(f"no single-task baseline for this task; baseline has {sorted(baseline)}",
                              key=task)
        out[task] = {}
        for metric, base in baseline[task].items():
            if metric not in results[task]:
                raise ConfigError(f"result lacks metric '{metric}' that the baseline has", key=f"{task}/{metric}")
            try:
                hib = higher_is_better[task][metric]
            except KeyError:
                raise ConfigError("no higher_is_better entry", key=f"{task}/{metric}") from None
            base = float(base)
            if base == 0 or not math.isfinite(base):
                raise ConfigError(f"baseline value {base} cannot be a reference", key=f"{task}/{metric}")
            sign = 1.0 if hib else -1.0
            out[task][metric] = sign * (float(results[task][metric]) - base) / abs(base) * 100
    return out


def delta_m(results: Results, baseline: Results,
            higher_is_better: Mapping[str, Mapping[str, bool]] | None = None, *,
            variant: str = "maninis", primary: Mapping[str, str] | None = None) -> float:
    """Δm of ``results`` against ``baseline`` in one of ``VARIANTS`` (percent).

    ``higher_is_better`` and ``primary`` default to those of each task's default metric.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown Δm variant; use one of {list(VARIANTS)}", key="variant")
    diffs = relative_diffs(results, baseline, higher_is_better)
    if not diffs:
        raise ConfigError("no tasks to compare", key="results")
    if variant == "maninis":
        if primary is None:
            primary = default_directions(results)[1]
        vals = []
        for task, d in diffs.items():
            if task not in primary or primary[task] not in d:
                raise ConfigError("no primary metric (or it is missing from the baseline)", key=task)
            vals.append(d[primary[task]])
        return sum(vals) / len(vals)
    if variant == "all_metrics":
        vals = [v for d in diffs.values() for v in d.values()]
        return sum(vals) / len(vals)
    per_task = [sum(d.values()) / len(d) for d in diffs.values() if d]
    return sum(per_task) / len(per_task)


def delta_m_all(results: Results, baseline: Results,
                higher_is_better: Mapping[str, Mapping[str, bool]] | None = None,
                primary: Mapping[str, str] | None = None) -> dict[str, float]:
    """All three variants, keyed ``delta_m_<variant>`` (defaults as in ``delta_m``)."""
    return {f"delta_m_{v}": delta_m(results, baseline, higher_is_better, variant=v, primary=primary)
            for v in VARIANTS}


@dataclass
class Baseline:
    """Single-task reference results with their metric directions and primary metrics."""

    results: dict[str, dict[str, float]]
    higher_is_better: dict[str, dict[str, bool]]
    primary: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metrics(cls, results: Results, metrics: Mapping[str, Any], meta: dict[str, Any] | None = None
                     ) -> Baseline:
        """Build from ``{task: values}`` and the metric objects that produced them."""
        return cls({t: {k: float(v) for k, v in r.items()} for t, r in results.items()},
                   {t: dict(metrics[t].higher_is_better) for t in results},
                   {t: metrics[t].primary for t in results}, dict(meta or {}))

    def delta(self, results: Results) -> dict[str, float]:
        """The three Δm variants of ``results`` against this baseline."""
        return delta_m_all(results, self.results, self.higher_is_better, self.primary)

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file atomically (temporary file + rename)."""
        doc = {"format": _FORMAT, "metrics": self.results, "higher_is_better": self.higher_is_better,
               "primary": self.primary, "meta": self.meta}
        atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Baseline:
        """Read a file written by ``save``; ConfigError names the file and the bad key."""
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("baseline file not found", path=str(path)) from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"not valid JSON: {e}", path=str(path)) from None
        if not isinstance(doc, dict):
            raise ConfigError("expected a JSON object", path=str(path))
        if doc.get("format") != _FORMAT:  # bare {task: {metric: value}} or {"metrics": {...}}
            data = doc.get("metrics", doc)
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ConfigError(f"expected format '{_FORMAT}' or {{task: {{metric: value}}}}",
                                  key="format", path=str(path))
            try:
                hib, primary = default_directions(data)
            except ConfigError as e:
                raise ConfigError(str(e), path=str(path)) from None
            doc = {"metrics": data, "higher_is_better": hib, "primary": primary, "meta": {}}
        for key in ("metrics", "higher_is_better", "primary"):
            if not isinstance(doc.get(key), dict):
                raise ConfigError("missing or not a mapping", key=key, path=str(path))
        for task, vals in doc["metrics"].items():
            for metric in vals:
                if metric not in doc["higher_is_better"].get(task, {}):
                    raise ConfigError("no higher_is_better entry", key=f"{task}/{metric}", path=str(path))
        return cls(doc["metrics"], doc["higher_is_better"], doc["primary"], doc.get("meta", {}))


def save_baseline(path: str | os.PathLike, results: Results, metrics: Mapping[str, Any],
                  meta: dict[str, Any] | None = None) -> Baseline:
    """Store single-task ``results`` (with the metric objects' directions) as a baseline file."""
    base = Baseline.from_metrics(results, metrics, meta)
    base.save(path)
    return base


def load_baseline(path: str | os.PathLike) -> Baseline:
    """Load a baseline file written by ``save_baseline``."""
    return Baseline.load(path)
