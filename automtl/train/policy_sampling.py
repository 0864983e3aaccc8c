"""Choosing the deployed policy: draw N from the trained logits, keep those within a parameter
budget, optionally score them on validation data, pick the best.

AutoMTL samples a policy from ``softmax(logits)`` after policy-training; drawing several and
filtering by a hard parameter budget makes the size of the result a user decision.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from automtl.errors import ConfigError, SearchError
from automtl.io import atomic_write_text
from automtl.train.evaluation import as_baseline, run_metrics


@dataclass
class SampledPolicy:
    """One drawn policy with its parameter count and (when scored) validation results."""

    seed: int
    policy: Any
    params: int
    results: dict[str, dict[str, float]] | None = None
    score: float | None = None


@dataclass
class SampleReport:
    """What :func:`choose_policy` did: every candidate, the budget and the choice."""

    chosen: SampledPolicy
    candidates: list[SampledPolicy]
    max_params: int | None
    reference_params: int
    scored_by: str = field(default="none")

    def rows(self) -> list[list[Any]]:
        """A table of the candidates (seed, params, fraction of the reference, score, chosen)."""
        return [[c.seed, c.params, f"{c.params / self.reference_params:.3f}",
                 "" if c.score is None else f"{c.score:.3f}", "*" if c is self.chosen else ""]
                for c in self.candidates]


def reference_params(model: Any) -> int:
    """Parameters of one separate network per task (the all-specialize policy)."""
    from automtl.supernet import Policy

    return int(model.count_params(Policy.all(model, "specialize"))["total"])


def sample_candidates(model: Any, n: int, *, seed: int = 0, temperature: float = 1.0,
                      max_params: int | None = None, include_argmax: bool = False) -> list[SampledPolicy]:
    """Draw ``n`` policies (seeds ``seed..seed+n-1``), drop duplicates and those over ``max_params``."""
    if n < 1:
        raise ConfigError("must be >= 1", key="n")
    seen: set[Any] = set()
    out: list[SampledPolicy] = []
    drawn = [(s, model.sample_policy(seed=s, temperature=temperature)) for s in range(seed, seed + n)]
    if include_argmax:
        drawn.insert(0, (-1, model.argmax_policy()))
    for s, policy in drawn:
        key = policy.key()
        if key in seen:
            continue
        seen.add(key)
        params = int(model.count_params(policy)["total"])
        if max_params is None or params <= max_params:
            out.append(SampledPolicy(s, policy, params))
    return out


def score_policy(model: Any, policy: Any, val_loaders: Mapping[str, Any], metrics: Mapping[str, Any], *,
                 baseline: Any = None, device: torch.device | str = "cpu",
                 max_batches: int | None = None) -> tuple[dict[str, dict[str, float]], float]:
    """Validation results of ``model`` under ``policy`` and a score (higher is better).

    The score is Δm (Maninis) against ``baseline`` when one is given, else the mean over tasks
    of each metric's primary value signed so that higher is better.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    results = {}
    try:
        with torch.no_grad():
            for task in model.tasks:
                loader = val_loaders[task]
                if max_batches is not None:
                    loader = _first(loader, max_batches)
                fwd = lambda x, t=task: model(x, task=t, stage="fixed", policy=policy)
                results[task] = run_metrics(fwd, loader, metrics[task], device, task)
    finally:
        model.train(was_training)
    if baseline is not None:
        return results, float(as_baseline(baseline).delta(results)["delta_m_maninis"])
    vals = []
    for task, res in results.items():
        m = metrics[task]
        primary = getattr(m, "primary", next(iter(res)))
        sign = 1.0 if getattr(m, "higher_is_better", {}).get(primary, True) else -1.0
        vals.append(sign * res[primary])
    return results, sum(vals) / len(vals)


def choose_policy(model: Any, n: int = 20, *, seed: int = 0, budget: float | None = None,
                  max_params: int | None = None, val_loaders: Mapping[str, Any] | None = None,
                  metrics: Mapping[str, Any] | None = None, baseline: Any = None,
                  device: torch.device | str = "cpu", temperature: float = 1.0,
                  max_batches: int | None = None, include_argmax: bool = False) -> SampleReport:
    """Draw ``n`` policies, keep those within the budget, score them if data is given, pick one.

    ``budget`` is a fraction of :func:`reference_params` (one network per task); ``max_params``
    an absolute limit (the smaller one applies). Without validation data the first feasible
    draw is chosen (AutoMTL's single sample). ``include_argmax`` adds the most likely policy
    (seed ``-1``) to the candidates. Raises SearchError when nothing fits.
    """
    ref = reference_params(model)
    limit = max_params
    if budget is not None:
        if not 0 < budget:
            raise ConfigError("must be > 0", key="budget")
        limit = min(limit, int(math.floor(budget * ref))) if limit is not None else int(math.floor(budget * ref))
    cands = sample_candidates(model, n, seed=seed, temperature=temperature, max_params=limit,
                              include_argmax=include_argmax)
    if not cands:  # only reachable with a limit: without one every (deduplicated) draw is kept
        share = f"{limit / ref:.0%}" if limit is not None else "no limit"
        raise SearchError(f"none of {n} sampled policies fits {limit} parameters "
                          f"({share} of {ref}); raise the budget, draw more (n) or lower the "
                          f"sampling temperature")
    scored_by = "none"
    if val_loaders is not None and metrics is not None:
        scored_by = "delta_m_maninis" if baseline is not None else "primary metrics"
        for c in cands:
            c.results, c.score = score_policy(model, c.policy, val_loaders, metrics, baseline=baseline,
                                              device=device, max_batches=max_batches)
        chosen = max(cands, key=lambda c: (c.score, -c.params))
    else:
        chosen = cands[0]
    return SampleReport(chosen, cands, limit, ref, scored_by)


def write_choice(report: SampleReport, out_dir: str | os.PathLike, *, name: str = "policy") -> dict[str, Path]:
    """Save the chosen policy's JSON and picture, and a candidates table, into ``out_dir``."""
    from automtl.viz import plot_policy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"policy": report.chosen.policy.save(out / f"{name}.json") or out / f"{name}.json",
             "picture": out / f"{name}.png", "candidates": out / f"{name}_candidates.tsv"}
    plot_policy(report.chosen.policy, paths["picture"],
                title=f"sampled policy: {report.chosen.params:,} params")
    lines = ["seed\tparams\tfraction\tscore\tchosen"] + ["\t".join(map(str, r)) for r in report.rows()]
    atomic_write_text(paths["candidates"], "\n".join(lines) + "\n")
    return paths


def _first(loader: Any, k: int) -> list[Any]:
    out = []
    for i, batch in enumerate(loader):
        if i >= k:
            break
        out.append(batch)
    return out
