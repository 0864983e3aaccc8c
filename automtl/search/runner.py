"""``EvolutionSearch``: run a joint-task evolutionary search on an optuna study.

One object ties a space, an evaluator, a fitness and the :class:`EvolutionSettings` to a study
in a storage. ``run`` asks the sampler for a candidate, evaluates it, tells the study, and
stops when the study holds ``population × generations`` completed trials — counted across
every worker, so a resumed or parallel search finishes the same total. Trials left RUNNING by
a dead worker are marked failed ("interrupted", :mod:`automtl.search.study`) and their
candidate is evaluated again by the next trial.

Example::

    from automtl.search import EvolutionSearch, EvolutionSettings, ToyEvaluator
    from automtl.spaces import LayeredToySpace
    space = LayeredToySpace()
    settings = EvolutionSettings(budget=(20_000, 40_000), generations=3, population=10,
                                 top_k=3, n_mutations=5, n_crossovers=5)
    search = EvolutionSearch(space, ToyEvaluator(space), settings, storage="memory", seed=0,
                             progress=False)
    result = search.run()
    result.best, result.best_params["total"]
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import SearchError
from automtl.search.evaluators import Evaluator
from automtl.search.fitness import Fitness, t_score
from automtl.search.result import SearchResult, build_result
from automtl.search.samplers import EvolutionSampler, ParetoEvolutionSampler, RandomCandidateSampler
from automtl.search.settings import EvolutionSettings, check_budget, check_seed
from automtl.search.storage import default_storage_url, finish_trial, open_storage
from automtl.search.study import StudyIdentity, fail_orphans, open_study
from automtl.search.tracking import LOG, Progress, TrialBoard, attach_log, detach_log
from automtl.spaces.base import Candidate, SearchSpace

__all__ = ["EvolutionSearch"]

#: the sampler of each mode
SAMPLERS: dict[str, Callable[..., EvolutionSampler | ParetoEvolutionSampler]] = {
    "evolution": EvolutionSampler, "pareto": ParetoEvolutionSampler,
    "random": RandomCandidateSampler}


class EvolutionSearch:
    """A joint-task evolutionary search of ``space`` under a parameter budget.

    Args:
        space: the :class:`SearchSpace`.
        evaluator: gives per-task scores of a candidate.
        settings: the :class:`EvolutionSettings` (budget, mode, generations, evolution, stop
            rules), or a mapping of them such as a config's ``search`` section
            (:class:`ConfigError` at ``search.<key>`` for a bad one).
        fitness: combines scores (default T-Score, the plain sum); single-objective modes only.
        storage: an optuna storage or URL (see :func:`open_storage`); default SQLite in
            ``work_dir``.
        study_name: the study to create or (``resume=True``) continue.
        resume: continue an existing study; without it an existing study is an error.
        work_dir: where outputs and the log go (``None``: nowhere).
        seed: seeds the sampler.
        progress: show a progress bar.
        tensorboard: also log fitness, size and scores per trial to ``<work_dir>/tb``.
    """

    def __init__(self, space: SearchSpace, evaluator: Evaluator,
                 settings: EvolutionSettings | Mapping[str, Any], *,
                 fitness: Fitness | None = None, storage: str | BaseStorage | None = None,
                 study_name: str = "automtl-search", resume: bool = False,
                 work_dir: str | os.PathLike[str] | None = None, seed: int | None = None,
                 progress: bool = True, tensorboard: bool = False) -> None:
        self.settings = EvolutionSettings.parse(settings)
        self.space, self.evaluator = space, evaluator
        self.fitness = fitness or t_score()
        self.fitness.bind(evaluator)
        self.budget = check_budget(space, self.settings.budget)
        self.tasks = tuple(evaluator.tasks or space.tasks)
        self.seed = check_seed(seed)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.progress = progress
        self.sampler = SAMPLERS[self.settings.mode](space, self.settings, seed=seed)
        self._log_handler = None
        self.board: TrialBoard | None = None
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._log_handler = attach_log(self.work_dir)
            if tensorboard:
                self.board = TrialBoard(self.work_dir / "tb")
        self.storage = open_storage(storage, work_dir=self.work_dir)
        #: the URL other worker processes open (None for a storage object passed in)
        self.storage_url = storage if isinstance(storage, str) else (
            default_storage_url(self.work_dir) if storage is None and self.work_dir else None)
        identity = StudyIdentity(space.name, space.signature(), self.budget, self.mode,
                                 self.tasks)
        self.study = open_study(self.storage, study_name, identity, sampler=self.sampler,
                                directions=self._directions(), resume=resume)
        LOG.info("study '%s' (%s, %d trials so far), budget %s..%s params", study_name,
                 self.mode, len(self.study.trials), f"{self.budget[0]:,}", f"{self.budget[1]:,}")
        #: wall and CPU seconds spent inside ``evaluator.evaluate`` during the last ``run``
        self.eval_seconds, self.eval_cpu_seconds = 0.0, 0.0

    @property
    def mode(self) -> str:
        """``evolution``, ``pareto`` or ``random`` (see :data:`MODES`)."""
        return self.settings.mode

    def describe(self) -> dict[str, Any]:
        """What defines this search, JSON-able (written as ``search.json``)."""
        return {**self.settings.model_dump(mode="json"), "space": self.space.name,
                "signature": self.space.signature(), "seed": self.seed,
                "study_name": self.study.study_name, "fitness": self.fitness.describe(),
                "tasks": list(self.tasks)}

    def _directions(self) -> list[str]:
        if self.mode != "pareto":
            return ["maximize"]
        dirs = ["maximize" if self.evaluator.direction(t) else "minimize" for t in self.tasks]
        return dirs + ["minimize"]

    def close(self) -> None:
        """Detach the log file handler and close the tensorboard writer."""
        if self.board is not None:
            self.board.close()
        detach_log(self._log_handler)
        self._log_handler = None

    def fail_orphans(self, trials: list[FrozenTrial] | None = None) -> int:
        """Mark RUNNING trials of dead workers as failed ("interrupted"); see
        :func:`automtl.search.study.fail_orphans`. Returns how many were marked."""
        return fail_orphans(self.study, trials, stale_after_s=self.settings.stale_after_s)

    def target_trials(self, n_generations: int | None = None) -> int:
        """Completed trials that ``n_generations`` (default: the settings') generations make."""
        return self.settings.target_trials(n_generations)

    # -- running -----------------------------------------------------------------------
    def run(self, n_generations: int | None = None, *, n_trials: int | None = None,
            timeout_s: float | None = None, write: bool = True) -> SearchResult:
        """Evaluate candidates until the study holds ``population × n_generations`` (default
        the settings' ``generations``; or ``n_trials``) completed trials, then return the
        result (and, with a work dir and ``write``, write the outputs; helper workers pass
        ``write=False``)."""
        target = n_trials if n_trials is not None else self.target_trials(n_generations)
        storage, sid = self.study._storage, self.study._study_id
        minimize = self.mode != "pareto" and self.study.direction == StudyDirection.MINIMIZE
        t0 = time.monotonic()
        done = len(storage.get_all_trials(sid, deepcopy=False, states=(TrialState.COMPLETE,)))
        bar = Progress(target, done, enabled=self.progress,
                       desc=f"search {self.study.study_name}")
        failures, self.eval_seconds, self.eval_cpu_seconds = 0, 0.0, 0.0
        if self.board is not None:
            self.board.open()
        try:
            while True:
                trials = storage.get_all_trials(sid, deepcopy=False)
                if self.fail_orphans(trials):
                    trials = storage.get_all_trials(sid, deepcopy=False)
                done = sum(t.state == TrialState.COMPLETE for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                bar.show(done, trials, minimize=minimize)
                if done >= target or done + running >= target:
                    break
                if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                    LOG.info("timeout after %.0f s", time.monotonic() - t0)
                    break
                failures = 0 if self._one_trial(trials) else failures + 1
                if failures >= self.settings.max_consecutive_failures:
                    raise SearchError(f"{failures} evaluations failed in a row; the last error is "
                                      "in the study (user attr 'error') and the log")
        finally:
            bar.close()
            if self.board is not None:
                self.board.flush()
        result = self.result()
        if write and self.work_dir is not None:
            self.write_outputs(result)
        return result

    def _one_trial(self, trials: list[FrozenTrial]) -> bool:
        """Create, evaluate and finish one trial; ``trials`` is a fresh read of the study."""
        trial, cand = self.sampler.create_trial(self.study, trials, annotate=self._annotate)
        params = trial.user_attrs["params"]
        try:
            t, c = time.monotonic(), time.process_time()
            scores = self._evaluate(cand)
            self.eval_seconds += time.monotonic() - t
            self.eval_cpu_seconds += time.process_time() - c
            values = self._values(scores, params)
        except Exception as exc:  # a failing candidate must not stop the search
            msg = f"{type(exc).__name__}: {exc}"
            self._finish(trial, TrialState.FAIL, user_attrs={"error": msg[:2000]})
            LOG.warning("trial %d failed: %s (candidate %s)", trial.number, msg,
                        json.dumps(cand, sort_keys=True))
            return False
        # the scalar fitness is recorded in every mode (Pareto: for plots and the progress bar)
        fitness = values[0] if self.mode != "pareto" else float(self.fitness(scores))
        self._finish(trial, TrialState.COMPLETE, values,
                     user_attrs={"scores": scores, "fitness": fitness})
        if self.board is not None:
            self.board.log(trial.number, float(fitness), params, scores)
        LOG.info("trial %d params=%d scores=%s value=%s", trial.number, params["total"],
                 json.dumps(scores), values)
        return True

    def _annotate(self, template: FrozenTrial, cand: Candidate) -> None:
        """Add the candidate's size and budget constraint to a new trial's template."""
        params = self.space.count_params(cand)
        total = params["total"]
        template.user_attrs.update(candidate=cand, params=params, params_total=total,
                                   feasible=self.budget[0] <= total <= self.budget[1])
        # optuna v5 constraint (<= 0 feasible): distance outside the window
        template.set_constraint("params_window",
                                max(self.budget[0] - total, total - self.budget[1]))

    def _evaluate(self, cand: Candidate) -> dict[str, float]:
        scores = {k: float(v) for k, v in self.evaluator.evaluate(cand).items()}
        bad = [k for k, v in scores.items() if not math.isfinite(v)]
        if bad:
            raise SearchError(f"evaluation gave a non-finite score for {bad}")
        return scores

    def _values(self, scores: Mapping[str, float], params: Mapping[str, int]) -> list[float]:
        if self.mode == "pareto":
            missing = [t for t in self.tasks if t not in scores]
            if missing:
                raise SearchError(f"evaluator reported no score for tasks {missing}")
            return [scores[t] for t in self.tasks] + [float(params["total"])]
        value = float(self.fitness(scores))
        if math.isnan(value):
            raise SearchError(f"the fitness of scores {scores} is NaN")
        return [value]

    def _finish(self, trial: FrozenTrial, state: TrialState, values: list[float] | None = None,
                user_attrs: dict[str, Any] | None = None) -> None:
        """``study.tell`` without reading the trial back from the storage twice (a query each on
        an RDB storage; the values are checked by ``_values``): the sampler's ``after_trial``,
        then the user attributes, state and values in one write."""
        try:
            self.sampler.after_trial(self.study, trial, state, values)
        finally:
            finish_trial(self.study._storage, trial._trial_id, state, values, user_attrs)

    # -- results -----------------------------------------------------------------------
    def result(self) -> SearchResult:
        """The current result of the study (best candidate, Pareto set, every trial)."""
        trials = self.study._storage.get_all_trials(self.study._study_id, deepcopy=False)
        return build_result(self.study, trials, gen_key=self.sampler._get_generation_key(),
                            mode=self.mode, budget=self.budget, fitness=self.fitness)

    def write_outputs(self, result: SearchResult | None = None) -> SearchResult:
        """Write the best candidate, ``trials.csv``, ``result.json``, ``search.json`` and the
        plot into the work dir; returns the result with ``outputs`` filled."""
        from automtl.search.report import write_outputs

        if self.work_dir is None:
            raise SearchError("this search has no work dir to write outputs to")
        result = result or self.result()
        result.outputs = write_outputs(self, result, self.work_dir)
        return result
