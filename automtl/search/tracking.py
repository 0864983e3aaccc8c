"""Following a search as it runs: the ``search.log`` file, the progress bar, tensorboard.

Nothing here decides anything: the runner reports trials, these show them.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

__all__ = ["LOG", "Progress", "TrialBoard", "attach_log", "best_trial", "detach_log"]

LOG = logging.getLogger("automtl.search")


def attach_log(work_dir: str | os.PathLike[str]) -> logging.Handler:
    """Send the ``automtl.search`` log to ``<work_dir>/search.log`` (once per file)."""
    path = str((Path(work_dir) / "search.log").resolve())
    for h in LOG.handlers:
        if isinstance(h, logging.FileHandler) and h.baseFilename == path:
            return h
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler | None) -> None:
    """Stop sending the log to ``handler`` and close its file."""
    if handler is not None:
        LOG.removeHandler(handler)
        handler.close()


def best_trial(trials: Sequence[FrozenTrial], *, minimize: bool = False) -> FrozenTrial | None:
    """The completed trial of highest (``minimize``: lowest) recorded fitness, earliest first."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and "fitness" in t.user_attrs]
    if not done:
        return None
    if minimize:
        return min(done, key=lambda t: (t.user_attrs["fitness"], t.number))
    return max(done, key=lambda t: (t.user_attrs["fitness"], -t.number))


class Progress:
    """A tqdm bar of completed trials out of the target, showing the best fitness and size."""

    def __init__(self, total: int, done: int, *, enabled: bool, desc: str) -> None:
        from tqdm.auto import tqdm

        self.total = total
        self.bar = tqdm(total=total, initial=min(done, total), disable=not enabled, desc=desc,
                        unit="cand", dynamic_ncols=True)

    def show(self, done: int, trials: Sequence[FrozenTrial], *, minimize: bool = False) -> None:
        """Move the bar to ``done`` and show the best of ``trials`` (a no-op when disabled)."""
        self.bar.n = min(done, self.total)
        if self.bar.disable:
            return
        best = best_trial(trials, minimize=minimize)
        if best is not None:
            self.bar.set_postfix(best=f"{best.user_attrs.get('fitness', best.values[0]):.4g}",
                                 params=f"{best.user_attrs.get('params_total', 0):,}")
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


class TrialBoard:
    """Per-trial tensorboard scalars in ``log_dir``: fitness, best fitness so far, size and
    each task's score (torch is imported only when the writer opens)."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self.best = -math.inf
        self._writer: Any = None

    def open(self) -> None:
        """Open the writer (the event file appears in ``log_dir``) unless it is open."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))

    def log(self, step: int, fitness: float, params: Mapping[str, int],
            scores: Mapping[str, float]) -> None:
        """Add one trial's scalars at ``step`` (the trial number)."""
        self.open()
        self.best = max(self.best, fitness)
        self._writer.add_scalar("search/fitness", fitness, step)
        self._writer.add_scalar("search/best_fitness", self.best, step)
        self._writer.add_scalar("search/params_total", params["total"], step)
        for t, v in scores.items():
            self._writer.add_scalar(f"score/{t}", v, step)

    def flush(self) -> None:
        """Write what is buffered."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Close the writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
