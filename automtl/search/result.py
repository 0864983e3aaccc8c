"""What a search found, read from its study: every trial as a record, the best one, the front.

:func:`build_result` turns the study's trials into a :class:`SearchResult` (best candidate,
Pareto set, counts); the reports (:mod:`automtl.search.report`) write it out.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from automtl.search.samplers import CANDIDATE, INTERRUPTED, KEY, ORIGIN, WORKER
from automtl.spaces.base import Candidate

__all__ = ["SearchResult", "TrialRecord", "build_result", "pareto_front"]


@dataclass
class TrialRecord:
    """One trial as the reports see it."""

    number: int
    state: str
    generation: int | None
    origin: str | None
    key: str | None
    candidate: Candidate | None
    params: dict[str, int]
    scores: dict[str, float]
    fitness: float | None
    error: str | None
    seconds: float | None
    worker: str | None

    @classmethod
    def from_trial(cls, t: FrozenTrial, gen_key: str) -> TrialRecord:
        """The record of optuna trial ``t`` (``gen_key``: the sampler's generation attribute)."""
        ua, sa = t.user_attrs, t.system_attrs
        secs = None
        if t.datetime_start and t.datetime_complete:
            secs = (t.datetime_complete - t.datetime_start).total_seconds()
        return cls(t.number, t.state.name, sa.get(gen_key), sa.get(ORIGIN), sa.get(KEY),
                   sa.get(CANDIDATE), dict(ua.get("params", {})), dict(ua.get("scores", {})),
                   ua.get("fitness"), ua.get("error"), secs, sa.get(WORKER))


@dataclass
class SearchResult:
    """What a search found: the best candidate (or the Pareto set) and every trial."""

    best: Candidate | None
    best_fitness: float | None
    best_params: dict[str, int]
    best_scores: dict[str, float]
    best_number: int | None
    pareto: list[TrialRecord]
    trials: list[TrialRecord]
    budget: tuple[int, int]
    n_complete: int = 0
    n_failed: int = 0
    outputs: dict[str, Path] = field(default_factory=dict)


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Records not dominated in (higher fitness, fewer parameters), by increasing size."""
    scored = sorted(((r, r.fitness) for r in records if r.fitness is not None),
                    key=lambda rf: (rf[0].params.get("total", 0), -rf[1]))
    front, best = [], -math.inf
    for r, fitness in scored:
        if fitness > best:
            front.append(r)
            best = fitness
    return front


def build_result(study: optuna.Study, trials: Sequence[FrozenTrial], *, gen_key: str,
                 mode: str, budget: tuple[int, int],
                 fitness: Callable[[Mapping[str, float]], float]) -> SearchResult:
    """The result of ``trials`` (a read of ``study``): in ``pareto`` mode the front is
    optuna's non-dominated set over the objectives and the fitness is still reported for its
    members (plots, choosing one); otherwise it is :func:`pareto_front` of fitness vs. size."""
    records = [TrialRecord.from_trial(t, gen_key) for t in trials]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if mode == "pareto":
        front_ids = {t.number for t in study.best_trials} if done else set()
        for r in records:
            if r.state == "COMPLETE" and r.fitness is None and r.scores:
                r.fitness = float(fitness(r.scores))
        pareto = [r for r in records if r.number in front_ids]
    else:
        pareto = pareto_front([r for r in records if r.state == "COMPLETE"])
    complete = [r for r in records if r.state == "COMPLETE" and r.fitness is not None]
    best = max(complete, key=lambda r: (r.fitness, -r.number)) if complete else None
    n_failed = sum(r.state == "FAIL" and not t.system_attrs.get(INTERRUPTED)
                   for r, t in zip(records, trials))
    return SearchResult(
        best=best.candidate if best else None, best_fitness=best.fitness if best else None,
        best_params=best.params if best else {}, best_scores=best.scores if best else {},
        best_number=best.number if best else None, pareto=pareto, trials=records,
        budget=budget, n_complete=len(done), n_failed=n_failed)
