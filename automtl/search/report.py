"""Search outputs: best candidate file, ``trials.csv``, ``result.json``, the fitness-vs-size plot.

Every file goes through :func:`automtl.io.atomic_write`, so a killed search never leaves half
a file behind.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automtl.io import atomic_write, atomic_write_text
from automtl.search.result import SearchResult, TrialRecord, pareto_front

if TYPE_CHECKING:
    from automtl.search.runner import EvolutionSearch


def write_trials_csv(records: Sequence[TrialRecord], tasks: Sequence[str], path: Path) -> Path:
    """One row per trial: number, state, generation, origin, key, sizes, scores, fitness,
    error, seconds, worker, and the candidate as JSON."""
    cols = (["number", "state", "generation", "origin", "key", "params_total"]
            + [f"params_{t}" for t in tasks] + [f"score_{t}" for t in tasks]
            + ["fitness", "seconds", "worker", "error", "candidate"])
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(cols)
    for r in records:
        w.writerow([r.number, r.state, r.generation, r.origin, r.key, r.params.get("total", "")]
                   + [r.params.get(t, "") for t in tasks] + [r.scores.get(t, "") for t in tasks]
                   + ["" if r.fitness is None else r.fitness,
                      "" if r.seconds is None else f"{r.seconds:.4f}", r.worker or "",
                      r.error or "",
                      "" if r.candidate is None else json.dumps(r.candidate, sort_keys=True)])
    return atomic_write_text(path, text.getvalue())


def plot_search(result: SearchResult, path: Path, *, title: str = "") -> Path:
    """Fitness vs. total parameters of every completed trial, the Pareto front (max fitness,
    min size), the budget window, and the best candidate (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in result.trials if r.state == "COMPLETE" and r.fitness is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    lo, hi = result.budget
    ax.axvspan(lo, hi, color="tab:green", alpha=0.12, label=f"budget {lo:,}..{hi:,}")
    if done:
        gens = [r.generation or 0 for r in done]
        sc = ax.scatter([r.params["total"] for r in done], _fitnesses(done), c=gens,
                        cmap="viridis", s=14, alpha=0.8, label="candidates")
        fig.colorbar(sc, ax=ax, label="generation")
        front = pareto_front(done)
        ax.step([r.params["total"] for r in front], _fitnesses(front), where="post",
                color="tab:red", lw=1.5, label="Pareto front")
        if result.best is not None and result.best_fitness is not None:  # set together
            ax.scatter([result.best_params["total"]], [result.best_fitness], marker="*", s=180,
                       color="tab:red", edgecolor="k", zorder=5, label="best")
    ax.set_xlabel("parameters (multi-task total)")
    ax.set_ylabel("fitness")
    ax.set_title(title or "search: fitness vs. size")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def _fitnesses(records: Sequence[TrialRecord]) -> list[float]:
    """The fitness of each record (all scored: callers pass completed, scored trials)."""
    return [r.fitness for r in records if r.fitness is not None]


def _record_json(r: TrialRecord) -> dict[str, Any]:
    return {"number": r.number, "candidate": r.candidate, "params": r.params,
            "scores": r.scores, "fitness": r.fitness, "generation": r.generation}


def write_outputs(search: EvolutionSearch, result: SearchResult, work_dir: Path
                  ) -> dict[str, Path]:
    """Write best candidate, ``trials.csv``, ``result.json``, ``search.json`` and
    ``search.png`` into ``work_dir``; returns their paths by name."""
    work_dir = Path(work_dir)
    out: dict[str, Path] = {}
    if result.best is not None:
        out["best"] = search.space.save(result.best, work_dir / search.space.best_filename)
    out["trials"] = write_trials_csv(result.trials, search.tasks, work_dir / "trials.csv")
    summary = {"study": search.study.study_name, "mode": search.mode,
               "budget": list(result.budget), "n_complete": result.n_complete,
               "n_failed": result.n_failed,
               "best": None if result.best is None else {
                   "number": result.best_number, "candidate": result.best,
                   "params": result.best_params, "scores": result.best_scores,
                   "fitness": result.best_fitness},
               "pareto": [_record_json(r) for r in result.pareto]}
    for name, data in (("result", summary), ("search", search.describe())):
        out[name] = atomic_write_text(work_dir / f"{name}.json",
                                      json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    out["plot"] = plot_search(result, work_dir / "search.png",
                              title=f"{search.space.name}: {search.mode}")
    log = work_dir / "search.log"
    if log.exists():
        out["log"] = log
    return out
