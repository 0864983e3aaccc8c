"""Opening an optuna storage from a URL or path, with typed errors.

* ``None`` → a SQLite file ``search.db`` in the work dir;
* ``sqlite:///…``, ``postgresql://…``, ``mysql://…`` (any SQLAlchemy URL) → ``RDBStorage``;
* ``journal:PATH`` or a path ending in ``.log``/``.journal``/``.jsonl`` → a journal file
  (``JournalStorage(JournalFileBackend(PATH))``), the safest choice for several processes on
  one machine or on a shared file system;
* ``memory`` → in-process (benchmarks, tests; nothing survives the process).
"""
from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Container, Sequence

import optuna
from optuna.distributions import (BaseDistribution, check_distribution_compatibility,
                                  distribution_to_json, json_to_distribution)
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import SearchError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def default_storage_url(work_dir: str | os.PathLike[str]) -> str:
    """The SQLite URL of the default storage file in ``work_dir``."""
    return f"sqlite:///{Path(work_dir).resolve() / 'search.db'}"


def open_storage(url: str | BaseStorage | None, *, work_dir: str | os.PathLike[str] | None = None
                 ) -> BaseStorage:
    """An optuna storage for ``url`` (see the module doc); :class:`SearchError` if it cannot be
    opened, naming the URL and the reason."""
    if isinstance(url, BaseStorage):
        return url
    if url is None:
        if work_dir is None:
            raise SearchError("no storage URL and no work dir to put the default SQLite file in")
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        url = default_storage_url(work_dir)
    url = str(url)
    if url in ("memory", ":memory:"):
        return InMemoryStorage()
    try:
        if url.startswith("journal:") or (("://" not in url) and url.endswith(_JOURNAL_SUFFIXES)):
            path = Path(url[len("journal:"):] if url.startswith("journal:") else url)
            if not path.parent.is_dir():
                raise SearchError(f"cannot open journal storage '{url}': directory "
                                  f"'{path.parent}' does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if "://" not in url:
            raise SearchError(f"cannot open storage '{url}': use an SQLAlchemy URL "
                              "(sqlite:///file.db, postgresql://…), journal:PATH, or a path "
                              "ending in .log/.journal/.jsonl")
        return _open_rdb(url)
    except SearchError:
        raise
    except Exception as exc:  # SQLAlchemy / driver / OS errors of every kind
        raise SearchError(f"cannot open storage '{url}': {type(exc).__name__}: {exc}") from exc


def _open_rdb(url: str, attempts: int = 20) -> "BulkRDBStorage":
    """Open an RDB storage, retrying while another worker is creating the same fresh schema:
    optuna creates its tables on first open, and two workers starting together on a new
    database race ("table ... already exists"); the loser finds the tables on its next try."""
    for attempt in range(attempts):
        try:
            if not url.startswith("sqlite"):
                return BulkRDBStorage(url)
            storage = BulkRDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
            _tune_sqlite(storage)
            return storage
        except Exception as exc:
            if attempt + 1 == attempts or not _is_schema_race(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _is_schema_race(exc: BaseException) -> bool:
    """Whether ``exc`` is a concurrent first-open collision (tables or the version row being
    created by another process, or the database briefly locked while it does)."""
    text = str(exc).lower()
    return any(k in text for k in ("already exists", "database is locked", "unique constraint",
                                   "duplicate key", "duplicate entry"))


class BulkRDBStorage(RDBStorage):
    """``RDBStorage`` whose hot paths for a search use plain SQL statements, not ORM objects.

    optuna 5 writes a template's params and attributes one row at a time, each after a lookup
    of the trial (and of the parameter's first distribution in the study): about 1 ms per row
    on SQLite, 30-45 ms for a search trial with its genes as params. Here the rows go in one
    INSERT per table, the distributions are checked against the study's first ones (looked up
    once per parameter name and process), and the trial is numbered as optuna numbers it.
    Reading new/unfinished trials and finishing a trial are likewise plain SQL; the rows are the
    ones optuna writes (tested against its own calls). Everything else is ``RDBStorage``'s.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._first_dists: dict[tuple[int, str], BaseDistribution] = {}

    def finish_trial(self, trial_id: int, state: TrialState, values: Sequence[float] | None,
                     user_attrs: dict[str, Any]) -> None:
        """``set_trial_user_attr`` for each attribute plus ``set_trial_state_values`` in one
        transaction of plain SQL statements (see :func:`finish_trial`): the ORM path costs a
        trial lookup and a flush per attribute, ~4 ms a trial on SQLite."""
        from optuna.storages._rdb import models
        from sqlalchemy import delete, insert, select, update

        if not state.is_finished():
            raise ValueError(f"finish_trial needs a finished state, got {state.name}")
        trials_t = models.TrialModel.__table__
        attrs_t = models.TrialUserAttributeModel.__table__
        values_t = models.TrialValueModel.__table__
        unfinished = [s for s in TrialState if not s.is_finished()]
        now_utc = _dt.datetime.now().astimezone(_dt.timezone.utc).replace(tzinfo=None)
        with self.engine.begin() as conn:
            done = conn.execute(update(trials_t).where(
                trials_t.c.trial_id == trial_id, trials_t.c.state.in_(unfinished))
                .values(state=state, datetime_complete=now_utc))
            if done.rowcount != 1:  # missing or already finished: optuna's own errors
                found = conn.execute(select(trials_t.c.state)
                                     .where(trials_t.c.trial_id == trial_id)).first()
                if found is None:
                    raise KeyError(f"trial {trial_id} not found")
                self.check_trial_is_updatable(trial_id, found.state)
                raise optuna.exceptions.StorageInternalError(
                    f"trial {trial_id} could not be finished")
            if user_attrs:
                conn.execute(delete(attrs_t).where(attrs_t.c.trial_id == trial_id,
                                                   attrs_t.c.key.in_(list(user_attrs))))
                conn.execute(insert(attrs_t), _attr_rows(trial_id, user_attrs))
            if values:
                conn.execute(delete(values_t).where(values_t.c.trial_id == trial_id))
                conn.execute(insert(values_t), [
                    dict(trial_id=trial_id, objective=i, value=stored, value_type=kind)
                    for i, (stored, kind) in enumerate(
                        models.TrialValueModel.value_to_stored_repr(v) for v in values)])

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None
                          ) -> FrozenTrial:
        """``RDBStorage._create_new_trial`` for a template without values: the trial row, its
        params and attributes (one INSERT per table) and optuna's numbering (trials of the
        study created before it), in one transaction of plain SQL statements."""
        if template_trial is None or template_trial.values is not None \
                or template_trial.intermediate_values:
            return super()._create_new_trial(study_id, template_trial)
        from sqlalchemy import exc as sa_exc

        for attempt in range(5):  # as optuna: lock timeouts / deadlocks between workers retry
            try:
                return self._insert_template(study_id, template_trial)
            except sa_exc.OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def _insert_template(self, study_id: int, template: FrozenTrial) -> FrozenTrial:
        from optuna.storages._rdb import models
        from sqlalchemy import func, insert, select, update

        trials_t, studies_t = models.TrialModel.__table__, models.StudyModel.__table__
        dists = template.distributions
        with self.engine.begin() as conn:
            # the study row lock orders numbering between workers (SQLite: the writer lock)
            if conn.execute(select(studies_t.c.study_id).where(studies_t.c.study_id == study_id)
                            .with_for_update()).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            tid = conn.execute(insert(trials_t).values(
                study_id=study_id, number=None, state=template.state,
                datetime_start=_utc(template.datetime_start),
                datetime_complete=_utc(template.datetime_complete))).inserted_primary_key[0]
            self._check_distributions(conn, study_id, dists)
            params = [dict(trial_id=tid, param_name=name,
                           param_value=dists[name].to_internal_repr(value),
                           distribution_json=distribution_to_json(dists[name]))
                      for name, value in template.params.items()]
            for model, rows in ((models.TrialParamModel, params),
                                (models.TrialUserAttributeModel,
                                 _attr_rows(tid, template.user_attrs)),
                                (models.TrialSystemAttributeModel,
                                 _attr_rows(tid, template.system_attrs))):
                if rows:
                    conn.execute(insert(model.__table__), rows)
            number = conn.execute(select(func.count(trials_t.c.trial_id)).where(
                trials_t.c.study_id == study_id, trials_t.c.trial_id < tid)).scalar_one()
            conn.execute(update(trials_t).where(trials_t.c.trial_id == tid)
                         .values(number=number))
        # optuna deep-copies the template; the distributions are immutable values, so only the
        # attribute dicts (JSON values a caller might still mutate) are copied deeply
        return FrozenTrial(number=number, state=template.state, value=None, values=None,
                           datetime_start=_local(_utc(template.datetime_start)),
                           datetime_complete=_local(_utc(template.datetime_complete)),
                           params=dict(template.params), distributions=dict(dists),
                           user_attrs=copy.deepcopy(template.user_attrs),
                           system_attrs=copy.deepcopy(template.system_attrs),
                           intermediate_values={}, trial_id=tid)

    def _get_trials(self, study_id: int, states: Container[TrialState] | None,
                    included_trial_ids: set[int], trial_id_greater_than: int
                    ) -> list[FrozenTrial]:
        """``RDBStorage._get_trials`` (what the cached storage reads new and unfinished trials
        with) in plain SQL rows instead of ORM objects: the trials, then all their children in
        one query."""
        from optuna.storages._rdb import models
        from sqlalchemy import or_, select

        trials_t = models.TrialModel.__table__
        included = [i for i in included_trial_ids if i <= trial_id_greater_than]
        where = [trials_t.c.study_id == study_id]
        if states is not None:
            where.append(trials_t.c.state.in_(list(states)))  # type: ignore[call-overload]
        if trial_id_greater_than > -1:
            newer = trials_t.c.trial_id > trial_id_greater_than
            where.append(or_(trials_t.c.trial_id.in_(included), newer) if included else newer)
        with self.engine.connect() as conn:
            rows = conn.execute(select(trials_t).where(*where)
                                .order_by(trials_t.c.trial_id)).all()
            if not rows:  # a study without trials (yet), or no study: optuna's KeyError
                if conn.execute(select(models.StudyModel.__table__.c.study_id).where(
                        models.StudyModel.__table__.c.study_id == study_id)).first() is None:
                    raise KeyError(f"study {study_id} not found")
                return []
            children = conn.execute(_CHILDREN_QUERY, {"ids": [r.trial_id for r in rows]}).all()
        return _frozen_trials(rows, children)

    def _check_distributions(self, conn: "Connection", study_id: int,
                             dists: dict[str, BaseDistribution]) -> None:
        """Each distribution must be compatible with the study's first one of that name (as
        ``set_trial_param`` checks); the first ones are read once per process."""
        from optuna.storages._rdb import models
        from sqlalchemy import func, select

        missing = [n for n in dists if (study_id, n) not in self._first_dists]
        if missing:
            first = (select(models.TrialParamModel.param_name,
                            func.min(models.TrialParamModel.param_id))
                     .join(models.TrialModel)
                     .where(models.TrialModel.study_id == study_id,
                            models.TrialParamModel.param_name.in_(missing))
                     .group_by(models.TrialParamModel.param_name).subquery())
            found = conn.execute(
                select(models.TrialParamModel.param_name, models.TrialParamModel.distribution_json)
                .join(first, models.TrialParamModel.param_id == first.c[1])).all()
            for name, dist_json in found:
                self._first_dists[(study_id, name)] = json_to_distribution(dist_json)
        for name, dist in dists.items():
            known = self._first_dists.setdefault((study_id, name), dist)
            check_distribution_compatibility(known, dist)


_PARAM, _VALUE, _USER, _SYSTEM, _STEP = range(5)


def _children_query() -> Any:
    """One UNION ALL over the five child tables of the trials ``:ids``, as rows
    ``(kind, trial_id, name, idx, num, text, vtype, ord)`` ordered as optuna orders each table:
    one query instead of five (each SQL round trip costs ~0.2 ms on SQLite)."""
    from optuna.storages._rdb import models
    from sqlalchemy import (Float, Integer, String, Text, bindparam, cast, literal, null, select,
                            union_all)

    trial_ids = bindparam("ids", expanding=True)

    def row(kind: int, table: Any, *, name: Any = None, idx: Any = None, num: Any = None,
            text: Any = None, vtype: Any = None, order: Any) -> Any:
        return select(literal(kind, Integer).label("kind"), table.c.trial_id.label("trial_id"),
                      cast(null() if name is None else name, String).label("name"),
                      cast(null() if idx is None else idx, Integer).label("idx"),
                      cast(null() if num is None else num, Float).label("num"),
                      cast(null() if text is None else text, Text).label("text"),
                      cast(null() if vtype is None else vtype, String).label("vtype"),
                      cast(order, Integer).label("ord")).where(table.c.trial_id.in_(trial_ids))

    p, v = models.TrialParamModel.__table__, models.TrialValueModel.__table__
    u, sy = models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__
    st = models.TrialIntermediateValueModel.__table__
    both = union_all(
        row(_PARAM, p, name=p.c.param_name, num=p.c.param_value, text=p.c.distribution_json,
            order=p.c.param_id),
        row(_VALUE, v, idx=v.c.objective, num=v.c.value, vtype=v.c.value_type,
            order=v.c.objective),
        row(_USER, u, name=u.c.key, text=u.c.value_json, order=u.c.trial_user_attribute_id),
        row(_SYSTEM, sy, name=sy.c.key, text=sy.c.value_json,
            order=sy.c.trial_system_attribute_id),
        row(_STEP, st, idx=st.c.step, num=st.c.intermediate_value,
            vtype=st.c.intermediate_value_type, order=st.c.step)).subquery()
    return select(both).order_by(both.c.kind, both.c.ord)


_CHILDREN_QUERY = _children_query()  # built once: its SQL is compiled once per dialect


def _utc(local: _dt.datetime | None) -> _dt.datetime | None:
    """A datetime as the RDB stores it (naive UTC; ``TrialModel``'s setters do the same)."""
    if local is None:
        return None
    return local.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def _local(utc: _dt.datetime | None) -> _dt.datetime | None:
    """A naive UTC datetime of the RDB as naive local time (as ``TrialModel`` gives it)."""
    if utc is None:
        return None
    return utc.replace(tzinfo=_dt.timezone.utc).astimezone().replace(tzinfo=None)


@functools.lru_cache(maxsize=4096)
def _distribution(dist_json: str) -> BaseDistribution:
    return json_to_distribution(dist_json)


def _frozen_trials(rows: Sequence[Any], children: Sequence[Any]) -> list[FrozenTrial]:
    """FrozenTrials from rows of the trials table and of :func:`_children_query`, as
    ``RDBStorage._build_frozen_trial_from_trial_model`` builds them."""
    from optuna.storages._rdb import models

    value_types = models.TrialValueModel.TrialValueType
    step_types = models.TrialIntermediateValueModel.TrialIntermediateValueType
    by_id: dict[int, dict[str, Any]] = {
        r.trial_id: dict(params={}, dists={}, values={}, user={}, system={}, steps={})
        for r in rows}
    for c in children:
        # rows of trials created after the trials query (no snapshot across queries) are skipped
        if (d := by_id.get(c.trial_id)) is None:
            continue
        if c.kind == _PARAM:
            dist = _distribution(c.text)
            d["params"][c.name] = dist.to_external_repr(c.num)
            d["dists"][c.name] = dist
        elif c.kind == _VALUE:
            d["values"][c.idx] = models.TrialValueModel.stored_repr_to_value(
                c.num, value_types[c.vtype])
        elif c.kind in (_USER, _SYSTEM):
            d["user" if c.kind == _USER else "system"][c.name] = json.loads(c.text)
        else:
            d["steps"][c.idx] = \
                models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                    c.num, step_types[c.vtype])
    out = []
    for r in rows:
        d = by_id[r.trial_id]
        values = [d["values"][k] for k in sorted(d["values"])] if d["values"] else None
        out.append(FrozenTrial(
            number=r.number, state=r.state, value=None, values=values,
            datetime_start=_local(r.datetime_start), datetime_complete=_local(r.datetime_complete),
            params=d["params"], distributions=d["dists"], user_attrs=d["user"],
            system_attrs=d["system"], intermediate_values=d["steps"], trial_id=r.trial_id))
    return out


def _attr_rows(trial_id: int, attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(trial_id=trial_id, key=k, value_json=json.dumps(v)) for k, v in attrs.items()]


def _tune_sqlite(storage: RDBStorage) -> None:
    """WAL journal + ``synchronous=NORMAL``: one fsync per checkpoint instead of per commit
    (a killed process loses nothing; only a power cut may lose the last commits). This cuts
    the storage's share of a search from ~100 ms to a few ms per trial."""
    from sqlalchemy import event

    def on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect so every pooled connection gets the pragmas


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


def study_exists(storage: BaseStorage, name: str) -> bool:
    """Whether ``storage`` already holds a study called ``name``."""
    try:
        storage.get_study_id_from_name(name)
        return True
    except KeyError:
        return False


def list_studies(storage: BaseStorage) -> list[str]:
    """Names of the studies in ``storage``."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
