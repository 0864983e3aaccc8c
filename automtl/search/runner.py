"""``EvolutionSearch``: run a joint-task evolutionary search on an optuna study.

One object ties a space, an evaluator and a fitness to a study in a storage. ``run`` asks the
sampler for a candidate, evaluates it, tells the study, and stops when the study holds
``population × n_generations`` completed trials — counted across every worker, so a resumed
or parallel search finishes the same total. Trials left RUNNING by a dead worker on this host
are marked failed ("interrupted") and their candidate is evaluated again by the next trial.

Example::

    from automtl.search import EvolutionSearch, LayeredToySpace, ToyEvaluator
    space = LayeredToySpace()
    search = EvolutionSearch(space, ToyEvaluator(space), budget=(20_000, 40_000),
                             population=10, top_k=3, n_mutations=5, n_crossovers=5,
                             storage="memory", seed=0, progress=False)
    result = search.run(n_generations=3)
    result.best, result.best_params["total"]
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import SearchError
from automtl.search.evaluate import Evaluator, Fitness, t_score
from automtl.search.samplers import (CANDIDATE, INTERRUPTED, KEY, ORIGIN, WORKER,
                                     EvolutionSampler, ParetoEvolutionSampler,
                                     RandomCandidateSampler, worker_id)
from automtl.search.space import Candidate, SearchSpace
from automtl.search.storage import (default_storage_url, finish_trial, open_storage,
                                     study_exists)

LOG = logging.getLogger("automtl.search")

STUDY_SPACE = "automtl:space"
STUDY_SIGNATURE = "automtl:signature"
STUDY_BUDGET = "automtl:budget"
STUDY_MODE = "automtl:mode"
STUDY_TASKS = "automtl:tasks"

MODES = ("evolution", "pareto", "random")


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
    def from_trial(cls, t: FrozenTrial, gen_key: str) -> "TrialRecord":
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class EvolutionSearch:
    """A joint-task evolutionary search of ``space`` under a parameter budget.

    Args:
        space: the :class:`SearchSpace`.
        evaluator: gives per-task scores of a candidate.
        budget: ``(min_params, max_params)`` of the multi-task total.
        fitness: combines scores (default T-Score, the plain sum); single-objective modes only.
        mode: ``"evolution"`` (AutoFormer), ``"pareto"`` (NSGA-II over one objective per task
            plus the parameter count), or ``"random"`` (in-budget random search baseline).
        population, top_k, n_mutations, n_crossovers, p_layer, p_global: evolution settings.
        storage: an optuna storage or URL (see :func:`open_storage`); default SQLite in
            ``work_dir``.
        study_name: the study to create or (``resume=True``) continue.
        resume: continue an existing study; without it an existing study is an error.
        work_dir: where outputs and the log go (``None``: nowhere).
        seed: seeds the sampler.
        record_params: genes as optuna params too (see :class:`EvolutionSampler`).
        stale_after_s: RUNNING trials of workers on other hosts older than this are treated as
            orphans (``None``: only dead processes on this host are detected).
        max_consecutive_failures: stop with :class:`SearchError` after this many failed
            evaluations in a row (a broken evaluator, not a bad candidate).
        tensorboard: also log fitness, size and scores per trial to ``<work_dir>/tb``.
    """

    def __init__(self, space: SearchSpace, evaluator: Evaluator, *, budget: tuple[int, int],
                 fitness: Fitness | None = None, mode: str = "evolution", population: int = 50,
                 top_k: int = 10, n_mutations: int = 25, n_crossovers: int = 25,
                 p_layer: float = 0.2, p_global: float = 0.4,
                 storage: str | BaseStorage | None = None, study_name: str = "automtl-search",
                 resume: bool = False, work_dir: str | os.PathLike[str] | None = None,
                 seed: int | None = None, record_params: bool | None = None, progress: bool = True,
                 stale_after_s: float | None = None, max_consecutive_failures: int = 20,
                 tensorboard: bool = False) -> None:
        if mode not in MODES:
            raise SearchError(f"unknown search mode {mode!r}; use one of {MODES}")
        self.space, self.evaluator = space, evaluator
        self.fitness = fitness or t_score()
        self.fitness.bind(evaluator)
        self.mode = mode
        self.budget = check_budget(space, budget)
        self.population = population
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.progress = progress
        self.stale_after_s = stale_after_s
        self.max_consecutive_failures = max_consecutive_failures
        self.tensorboard = tensorboard and work_dir is not None
        self._tb: Any = None
        self._tb_best = -math.inf
        self.settings = dict(space=space.name, signature=space.signature(), mode=mode,
                             budget=list(self.budget), population=population, top_k=top_k,
                             n_mutations=n_mutations, n_crossovers=n_crossovers,
                             p_layer=p_layer, p_global=p_global, seed=seed,
                             study_name=study_name, fitness=self.fitness.describe(),
                             tasks=list(evaluator.tasks or space.tasks))
        kw = dict(budget=self.budget, population=population, top_k=top_k,
                  n_mutations=n_mutations, n_crossovers=n_crossovers, p_layer=p_layer,
                  p_global=p_global, seed=seed, record_params=record_params)
        cls = {"evolution": EvolutionSampler, "pareto": ParetoEvolutionSampler,
               "random": RandomCandidateSampler}[mode]
        self.sampler = cls(space, **kw)
        self._log_handler: logging.Handler | None = None
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._attach_log()
        self.storage = open_storage(storage, work_dir=self.work_dir)
        #: the URL other worker processes open (None for a storage object passed in)
        self.storage_url = storage if isinstance(storage, str) else (
            default_storage_url(self.work_dir) if storage is None and self.work_dir else None)
        self.study = self._open_study(study_name, resume)
        self.tasks = tuple(self.settings["tasks"])

    # -- study -------------------------------------------------------------------------
    def _directions(self) -> list[str]:
        if self.mode != "pareto":
            return ["maximize"]
        dirs = ["maximize" if self.evaluator.direction(t) else "minimize"
                for t in self.settings["tasks"]]
        return dirs + ["minimize"]

    def _open_study(self, name: str, resume: bool) -> optuna.Study:
        exists = study_exists(self.storage, name)
        if exists and not resume:
            raise SearchError(f"study '{name}' already exists in this storage; pass resume=True "
                              "(--resume) to continue it, or choose another study name")
        try:
            study = optuna.create_study(storage=self.storage, study_name=name,
                                        sampler=self.sampler, directions=self._directions(),
                                        load_if_exists=True)
        except ValueError as exc:  # directions differ from the stored study
            raise SearchError(f"study '{name}' cannot be continued: {exc}") from exc
        attrs = self.storage.get_study_system_attrs(study._study_id)
        mine = {STUDY_SPACE: self.space.name, STUDY_SIGNATURE: self.settings["signature"],
                STUDY_BUDGET: list(self.budget), STUDY_MODE: self.mode,
                STUDY_TASKS: self.settings["tasks"]}
        if STUDY_SIGNATURE not in attrs:
            if exists and study.trials:
                raise SearchError(f"study '{name}' holds {len(study.trials)} trials but was not "
                                  "made by an automtl search; use another study name")
            for k, v in mine.items():
                self.storage.set_study_system_attr(study._study_id, k, v)
        else:
            for k, v in mine.items():
                if attrs.get(k) != v:
                    what = k.split(":", 1)[1]
                    raise SearchError(
                        f"study '{name}' was created with {what}={attrs.get(k)!r} (space "
                        f"'{attrs.get(STUDY_SPACE)}'), not {v!r}; resume it with the same space "
                        "and settings or choose another study name")
        LOG.info("study '%s' (%s, %d trials so far), budget %s..%s params", name, self.mode,
                 len(study.trials), f"{self.budget[0]:,}", f"{self.budget[1]:,}")
        return study

    def _attach_log(self) -> None:
        assert self.work_dir is not None
        self._log_handler = attach_log(self.work_dir)

    def close(self) -> None:
        """Detach the log file handler and close the tensorboard writer."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._log_handler is not None:
            LOG.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    # -- orphans -----------------------------------------------------------------------
    def _is_orphan(self, t: FrozenTrial, me: str, now: _dt.datetime) -> bool:
        owner = t.system_attrs.get(WORKER)
        age = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
        if owner is None:
            return age > 120.0
        if owner == me:
            return False
        host, _, pid = owner.rpartition(":")
        if host == socket.gethostname():
            return not _pid_alive(int(pid))
        return self.stale_after_s is not None and age > self.stale_after_s

    def fail_orphans(self, trials: list[FrozenTrial] | None = None) -> int:
        """Mark RUNNING trials of dead workers as failed ("interrupted"); their candidates are
        re-evaluated by later trials. Returns how many were marked."""
        me, now, n = worker_id(), _dt.datetime.now(), 0
        storage = self.study._storage
        if trials is None:
            trials = storage.get_all_trials(self.study._study_id, deepcopy=False)
        for t in trials:
            if t.state != TrialState.RUNNING or not self._is_orphan(t, me, now):
                continue
            try:
                storage.set_trial_system_attr(t._trial_id, INTERRUPTED, True)
                storage.set_trial_user_attr(t._trial_id, "error",
                                            f"interrupted: worker {t.system_attrs.get(WORKER)} "
                                            "died; the candidate is evaluated again")
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except Exception:  # another worker got there first
                continue
            LOG.warning("trial %d was left running by dead worker %s: marked interrupted",
                        t.number, t.system_attrs.get(WORKER))
            n += 1
        return n

    # -- running -----------------------------------------------------------------------
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

    def target_trials(self, n_generations: int) -> int:
        """Completed trials that ``n_generations`` generations make."""
        return self.population * n_generations

    def run(self, n_generations: int = 20, *, n_trials: int | None = None,
            timeout_s: float | None = None, write: bool = True) -> SearchResult:
        """Evaluate candidates until the study holds ``population × n_generations`` (or
        ``n_trials``) completed trials, then return the result (and, with a work dir and
        ``write``, write the outputs; helper workers pass ``write=False``)."""
        target = n_trials if n_trials is not None else self.target_trials(n_generations)
        from tqdm.auto import tqdm

        t0 = time.monotonic()
        done = self._count(TrialState.COMPLETE)
        bar = tqdm(total=target, initial=min(done, target), disable=not self.progress,
                   desc=f"search {self.study.study_name}", unit="cand", dynamic_ncols=True)
        #: wall and CPU seconds spent inside ``evaluator.evaluate`` during this ``run``
        failures, self.eval_seconds, self.eval_cpu_seconds = 0, 0.0, 0.0
        if self.tensorboard and self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            assert self.work_dir is not None
            self._tb = SummaryWriter(str(self.work_dir / "tb"))
        try:
            while True:
                trials = self.study._storage.get_all_trials(self.study._study_id, deepcopy=False)
                if self.fail_orphans(trials):
                    trials = self.study._storage.get_all_trials(self.study._study_id,
                                                                deepcopy=False)
                done = sum(t.state == TrialState.COMPLETE for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                bar.n = min(done, target)
                self._postfix(bar, trials)
                if done >= target or done + running >= target:
                    break
                if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                    LOG.info("timeout after %.0f s", time.monotonic() - t0)
                    break
                ok = self._one_trial(trials)
                failures = 0 if ok else failures + 1
                if failures >= self.max_consecutive_failures:
                    raise SearchError(f"{failures} evaluations failed in a row; the last error is "
                                      "in the study (user attr 'error') and the log")
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.flush()
        result = self.result()
        if write and self.work_dir is not None:
            self.write_outputs(result)
        return result

    def write_outputs(self, result: SearchResult | None = None) -> SearchResult:
        """Write the best candidate, ``trials.csv``, ``result.json``, ``search.json`` and the
        plot into the work dir; returns the result with ``outputs`` filled."""
        from automtl.search.report import write_outputs

        if self.work_dir is None:
            raise SearchError("this search has no work dir to write outputs to")
        result = result or self.result()
        result.outputs = write_outputs(self, result, self.work_dir)
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
        if self._tb is not None:
            self._log_tb(trial.number, float(fitness), params, scores)
        LOG.info("trial %d params=%d scores=%s value=%s", trial.number, params["total"],
                 json.dumps(scores), values)
        return True

    def _finish(self, trial: FrozenTrial, state: TrialState, values: list[float] | None = None,
                user_attrs: dict[str, Any] | None = None) -> None:
        """``study.tell`` without reading the trial back from the storage twice (a query each on
        an RDB storage; the values are checked by ``_values``): the sampler's ``after_trial``,
        then the user attributes, state and values in one write."""
        try:
            self.sampler.after_trial(self.study, trial, state, values)
        finally:
            finish_trial(self.study._storage, trial._trial_id, state, values, user_attrs)

    def _log_tb(self, step: int, fitness: float, params: Mapping[str, int],
                scores: Mapping[str, float]) -> None:
        self._tb_best = max(self._tb_best, fitness)
        self._tb.add_scalar("search/fitness", fitness, step)
        self._tb.add_scalar("search/best_fitness", self._tb_best, step)
        self._tb.add_scalar("search/params_total", params["total"], step)
        for t, v in scores.items():
            self._tb.add_scalar(f"score/{t}", v, step)

    def _count(self, state: TrialState) -> int:
        return len(self.study._storage.get_all_trials(self.study._study_id, deepcopy=False,
                                                      states=(state,)))

    def _postfix(self, bar: Any, trials: list[FrozenTrial]) -> None:
        if bar.disable:
            return
        best = self._best_trial(trials)
        if best is not None:
            bar.set_postfix(best=f"{best.user_attrs.get('fitness', best.values[0]):.4g}",
                            params=f"{best.user_attrs.get('params_total', 0):,}")
        bar.refresh()

    def _best_trial(self, trials: list[FrozenTrial]) -> FrozenTrial | None:
        done = [t for t in trials if t.state == TrialState.COMPLETE and "fitness" in t.user_attrs]
        if not done:
            return None
        if self.mode != "pareto" and self.study.direction == StudyDirection.MINIMIZE:
            return min(done, key=lambda t: (t.user_attrs["fitness"], t.number))
        return max(done, key=lambda t: (t.user_attrs["fitness"], -t.number))

    def result(self) -> SearchResult:
        """The current result of the study (best candidate, Pareto set, every trial)."""
        trials = self.study._storage.get_all_trials(self.study._study_id, deepcopy=False)
        gen_key = self.sampler._get_generation_key()
        records = [TrialRecord.from_trial(t, gen_key) for t in trials]
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if self.mode == "pareto":
            front_ids = {t.number for t in self.study.best_trials} if done else set()
            # the fitness is still reported for the Pareto members (for plots and choosing one)
            for r in records:
                if r.state == "COMPLETE" and r.fitness is None and r.scores:
                    r.fitness = float(self.fitness(r.scores))
            pareto = [r for r in records if r.number in front_ids]
        else:
            pareto = pareto_front([r for r in records if r.state == "COMPLETE"])
        complete = [r for r in records if r.state == "COMPLETE" and r.fitness is not None]
        best = max(complete, key=lambda r: (r.fitness, -r.number)) if complete else None
        return SearchResult(
            best=best.candidate if best else None, best_fitness=best.fitness if best else None,
            best_params=best.params if best else {}, best_scores=best.scores if best else {},
            best_number=best.number if best else None, pareto=pareto, trials=records,
            budget=self.budget, n_complete=len(done),
            n_failed=sum(r.state == "FAIL" and not _interrupted(t) for r, t in zip(records, trials)))


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


def _interrupted(t: FrozenTrial) -> bool:
    return bool(t.system_attrs.get(INTERRUPTED))


def pareto_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """Records not dominated in (higher fitness, fewer parameters), by increasing size."""
    pts = sorted((r for r in records if r.fitness is not None),
                 key=lambda r: (r.params.get("total", 0), -r.fitness))
    front, best = [], -math.inf
    for r in pts:
        if r.fitness > best:
            front.append(r)
            best = r.fitness
    return front


def check_budget(space: SearchSpace, budget: Any) -> tuple[int, int]:
    """``budget`` as ``(min, max)`` ints, or :class:`SearchError` if it is malformed or no
    architecture of ``space`` can satisfy it (naming the smallest and largest sizes)."""
    try:
        lo, hi = (int(budget[0]), int(budget[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise SearchError(f"budget must be (min_params, max_params), got {budget!r}") from exc
    if lo > hi:
        raise SearchError(f"budget window is empty: min_params {lo:,} > max_params {hi:,}")
    small, large = space.param_range()
    if hi < small or lo > large:
        raise SearchError(
            f"no architecture of space '{space.name}' has {lo:,}..{hi:,} parameters: the "
            f"smallest has {small:,} and the largest {large:,}")
    return lo, hi
