"""Trial writes that take the RDB fast path when the storage is a :class:`BulkRDBStorage`.

Both helpers work on any optuna storage; on ours (behind optuna's cache) they replace several
round trips with one statement, elsewhere they fall back to optuna's own calls.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from automtl.search.storage.rdb import BulkRDBStorage

__all__ = ["created_without_rival", "finish_trial"]


def finish_trial(storage: BaseStorage, trial_id: int, state: TrialState,
                 values: Sequence[float] | None = None,
                 user_attrs: dict[str, Any] | None = None) -> None:
    """Record a finished trial's user attributes, state and values: one transaction on our RDB
    storage (one commit instead of one per attribute), optuna's separate calls elsewhere."""
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBs in a cache
    if isinstance(backend, BulkRDBStorage):
        backend.finish_trial(trial_id, state, values, user_attrs or {})
        return
    for key, value in (user_attrs or {}).items():
        storage.set_trial_user_attr(trial_id, key, value)
    storage.set_trial_state_values(trial_id, state, values)


def created_without_rival(storage: BaseStorage, study_id: int, trial_id: int, key: str,
                          value: Any, after_id: int = -1) -> FrozenTrial | None:
    """The trial ``trial_id`` just created, when the storage can tell cheaply that no trial
    created after ``after_id`` (the newest one the caller has already checked) and before it
    holds system attribute ``key`` = ``value`` (our RDB storage behind optuna's cache: one
    query instead of reading the study); ``None`` otherwise (a rival exists, or the caller
    must read the study to know)."""
    backend = getattr(storage, "_backend", None)
    if not isinstance(backend, BulkRDBStorage):
        return None
    try:  # the FrozenTrial optuna's cache keeps for a trial this process created
        with storage._lock:  # type: ignore[attr-defined]
            sid, number = storage._trial_id_to_study_id_and_number[trial_id]  # type: ignore[attr-defined]
            mine = storage._studies[sid].trials[number]  # type: ignore[attr-defined]
    except (AttributeError, KeyError):
        return None
    if backend.earlier_holders(study_id, trial_id, key, value, after_id):
        return None
    return mine
