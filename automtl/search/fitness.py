"""Fitness functions: an evaluator's per-task scores → the one number the evolution maximises.

:class:`WeightedSum` (``t_score`` = top-1 + mAP + mIoU is its preset) and :class:`DeltaM`,
registered in :data:`automtl.registry.FITNESS` as ``t_score``, ``weighted_sum`` and
``delta_m``; a config names one as ``fitness = dict(type=…)`` (or just ``"t_score"``).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from automtl.errors import ConfigError
from automtl.registry import FITNESS, build
from automtl.search.evaluators import Evaluator


def _number_map(value: Any, *, key: str) -> dict[str, float]:
    """``value`` as a non-empty ``{task: finite number}``, or :class:`ConfigError` at ``key``."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigError("must be a non-empty dict of task: number", key=key, value=value)
    out = {}
    for task, v in value.items():
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not isinstance(task, str) or not ok:
            raise ConfigError("must be a finite number", key=f"{key}.{task}", value=v)
        out[task] = float(v)
    return out


def _flag_map(value: Any, *, key: str) -> dict[str, bool]:
    """``value`` (None: empty) as ``{task: True/False}``, or :class:`ConfigError` at ``key``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("must be a dict of task: True/False", key=key, value=value)
    for task, v in value.items():
        if not isinstance(task, str) or not isinstance(v, bool):
            raise ConfigError("must be True or False", key=f"{key}.{task}", value=v)
    return dict(value)


def _check_tasks(named: Mapping[str, Any], evaluator: Evaluator, *, key: str) -> None:
    """:class:`ConfigError` at ``key.<task>`` for a task the evaluator does not report."""
    unknown = sorted(set(named) - set(evaluator.tasks)) if evaluator.tasks else []
    if unknown:
        raise ConfigError(f"task '{unknown[0]}' is not one the evaluator reports "
                          f"({list(evaluator.tasks)})", key=f"{key}.{unknown[0]}")


class Fitness(ABC):
    """Combines per-task scores into the single number the evolution maximises."""

    @abstractmethod
    def __call__(self, scores: Mapping[str, float]) -> float:
        """The fitness of one candidate's scores (higher is better)."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (stored with the study)."""
        return {"type": type(self).__name__}

    def bind(self, evaluator: Evaluator) -> None:  # noqa: B027 - an optional hook, no-op here
        """Take the evaluator's per-task directions where the config gave none."""


class WeightedSum(Fitness):
    """``Σ_t w_t · s_t``; a task with ``higher_is_better=False`` enters with a minus sign."""

    def __init__(self, weights: Mapping[str, float] | None = None, *,
                 higher_is_better: Mapping[str, bool] | None = None) -> None:
        self.weights = None if weights is None else _number_map(weights, key="weights")
        self.higher_is_better = _flag_map(higher_is_better, key="higher_is_better")

    def __call__(self, scores: Mapping[str, float]) -> float:
        total = 0.0
        weights = self.weights if self.weights is not None else {t: 1.0 for t in scores}
        for task, w in weights.items():
            if task not in scores:
                raise ConfigError(f"fitness weight for task '{task}' but the evaluator reports "
                                  f"{sorted(scores)}", key=f"fitness.weights.{task}")
            sign = 1.0 if self.higher_is_better.get(task, True) else -1.0
            total += sign * w * float(scores[task])
        return total

    def describe(self) -> dict[str, Any]:
        return {"type": "weighted_sum", "weights": self.weights,
                "higher_is_better": self.higher_is_better}

    def bind(self, evaluator: Evaluator) -> None:
        _check_tasks(self.weights or {}, evaluator, key="fitness.weights")
        for t in evaluator.tasks:
            self.higher_is_better.setdefault(t, evaluator.direction(t))


def t_score() -> WeightedSum:
    """ViT-MVT's T-Score: top-1 + mAP + mIoU, i.e. the unweighted sum of every task's score."""
    return WeightedSum(None)


class DeltaM(Fitness):
    """Δm = (1/T) Σ_t (−1)^{l_t} (M_t − B_t)/B_t · 100 against single-task baselines ``B``;
    ``l_t = 1`` where lower is better (Maninis 2019 / Vandenhende 2021)."""

    def __init__(self, baselines: Mapping[str, float], *,
                 lower_is_better: Mapping[str, bool] | None = None) -> None:
        self.baselines = _number_map(baselines, key="baselines")
        zero = [t for t, b in self.baselines.items() if b == 0]
        if zero:
            raise ConfigError("a baseline must be non-zero", key=f"baselines.{zero[0]}",
                              value=baselines[zero[0]])
        self.lower_is_better = _flag_map(lower_is_better, key="lower_is_better")

    def __call__(self, scores: Mapping[str, float]) -> float:
        terms = []
        for t, b in self.baselines.items():
            if t not in scores:
                raise ConfigError(f"baseline for task '{t}' but the evaluator reports "
                                  f"{sorted(scores)}", key=f"fitness.baselines.{t}")
            sign = -1.0 if self.lower_is_better.get(t, False) else 1.0
            terms.append(sign * (float(scores[t]) - b) / b * 100.0)
        return sum(terms) / len(terms)

    def describe(self) -> dict[str, Any]:
        return {"type": "delta_m", "baselines": self.baselines,
                "lower_is_better": self.lower_is_better}

    def bind(self, evaluator: Evaluator) -> None:
        _check_tasks(self.baselines, evaluator, key="fitness.baselines")
        for t in evaluator.tasks:
            self.lower_is_better.setdefault(t, not evaluator.direction(t))


FITNESS.register_module("weighted_sum", module=WeightedSum)
FITNESS.register_module("delta_m", module=DeltaM)
FITNESS.register_module("t_score", module=t_score)


def build_fitness(cfg: Mapping[str, Any] | str | None) -> Fitness:
    """A fitness from a config: ``"t_score"`` (the default), ``dict(type="weighted_sum",
    weights=…)``, ``dict(type="delta_m", baselines=…, lower_is_better=…)`` or any registered
    :data:`~automtl.registry.FITNESS` type."""
    if cfg is None:
        return t_score()
    if isinstance(cfg, str):
        cfg = {"type": cfg}
    return build(FITNESS, cfg, key="fitness")
