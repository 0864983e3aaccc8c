"""Study bookkeeping: what a search records on its optuna study, and trials of dead workers.

A search stamps its study with the space, its signature, the budget, the mode and the tasks
(:class:`StudyIdentity`); resuming with anything else is a :class:`SearchError` naming what
differs, so one study never mixes two searches. Trials left RUNNING by a worker that died
(a kill, a crash, a lost host) are *orphans*: :func:`fail_orphans` marks them failed
("interrupted") and the samplers hand their candidates to later trials.
"""
from __future__ import annotations

import datetime as _dt
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import SearchError
from automtl.io import pid_alive
from automtl.search.samplers import INTERRUPTED, WORKER, worker_id
from automtl.search.storage import study_exists

__all__ = ["STUDY_BUDGET", "STUDY_MODE", "STUDY_SIGNATURE", "STUDY_SPACE", "STUDY_TASKS",
           "StudyIdentity", "fail_orphans", "is_orphan", "open_study"]

LOG = logging.getLogger("automtl.search")

STUDY_SPACE = "automtl:space"
STUDY_SIGNATURE = "automtl:signature"
STUDY_BUDGET = "automtl:budget"
STUDY_MODE = "automtl:mode"
STUDY_TASKS = "automtl:tasks"
#: RUNNING trials without an owner older than this are orphans (created outside a search)
UNOWNED_AFTER_S = 120.0


@dataclass(frozen=True)
class StudyIdentity:
    """What makes two searches the same search: resuming needs every field to match."""

    space: str
    signature: Any
    budget: tuple[int, int]
    mode: str
    tasks: tuple[str, ...]

    def attrs(self) -> dict[str, Any]:
        """The study system attributes that record this identity (JSON-able)."""
        return {STUDY_SPACE: self.space, STUDY_SIGNATURE: self.signature,
                STUDY_BUDGET: list(self.budget), STUDY_MODE: self.mode,
                STUDY_TASKS: list(self.tasks)}


def open_study(storage: BaseStorage, name: str, identity: StudyIdentity, *,
               sampler: BaseSampler, directions: Sequence[Any], resume: bool) -> optuna.Study:
    """Create study ``name`` stamped with ``identity``, or (``resume``) continue it when it
    was made by the same search; :class:`SearchError` saying why not otherwise."""
    exists = study_exists(storage, name)
    if exists and not resume:
        raise SearchError(f"study '{name}' already exists in this storage; pass resume=True "
                          "(--resume) to continue it, or choose another study name")
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    directions=list(directions), load_if_exists=True)
    except ValueError as exc:  # directions differ from the stored study
        raise SearchError(f"study '{name}' cannot be continued: {exc}") from exc
    stored = storage.get_study_system_attrs(study._study_id)
    mine = identity.attrs()
    if STUDY_SIGNATURE not in stored:
        if exists and study.trials:
            raise SearchError(f"study '{name}' holds {len(study.trials)} trials but was not "
                              "made by an automtl search; use another study name")
        for k, v in mine.items():
            storage.set_study_system_attr(study._study_id, k, v)
        return study
    for k, v in mine.items():
        if stored.get(k) != v:
            what = k.split(":", 1)[1]
            raise SearchError(
                f"study '{name}' was created with {what}={stored.get(k)!r} (space "
                f"'{stored.get(STUDY_SPACE)}'), not {v!r}; resume it with the same space "
                "and settings or choose another study name")
    return study


def is_orphan(trial: FrozenTrial, me: str, now: _dt.datetime, *,
              stale_after_s: float | None) -> bool:
    """Whether a RUNNING ``trial`` belongs to nobody alive: a dead process on this host, or
    (with ``stale_after_s``) a worker on another host that has not finished it in time."""
    owner = trial.system_attrs.get(WORKER)
    age = (now - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
    if owner is None:
        return age > UNOWNED_AFTER_S
    if owner == me:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname():
        return not pid_alive(int(pid))
    return stale_after_s is not None and age > stale_after_s


def fail_orphans(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None, *,
                 stale_after_s: float | None = None) -> int:
    """Mark RUNNING trials of dead workers as failed ("interrupted"); their candidates are
    evaluated again by later trials. ``trials``: a fresh read of the study (read if None).
    Returns how many were marked."""
    me, now, n = worker_id(), _dt.datetime.now(), 0
    storage = study._storage
    if trials is None:
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
    for t in trials:
        if t.state != TrialState.RUNNING or not is_orphan(t, me, now,
                                                          stale_after_s=stale_after_s):
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
