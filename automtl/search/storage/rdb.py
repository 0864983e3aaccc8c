"""optuna's RDB storage with the hot paths of a search as prebuilt SQL statements.

optuna's ``RDBStorage`` goes through ORM objects: a trial with its genes as params costs tens of
SQL round trips and ORM flushes to create, one commit per attribute to finish, and five queries
per read of new trials. :class:`BulkRDBStorage` writes and reads the same rows with a few
statements built once (building a SQLAlchemy statement costs ~5x executing a prebuilt one on
SQLite); tests compare every path with optuna's own.
"""
from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import time
from collections.abc import Container, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from sqlalchemy import BindParameter
    from sqlalchemy.engine import Connection


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
        transaction (see :func:`automtl.search.storage.finish_trial`)."""
        from optuna.storages._rdb import models

        if not state.is_finished():
            raise ValueError(f"finish_trial needs a finished state, got {state.name}")
        sql = _sql()
        with self.engine.begin() as conn:
            done = conn.execute(sql.finish, {"b_tid": trial_id, "b_state": state,
                                             "b_done": _utc(_dt.datetime.now())})
            if done.rowcount != 1:  # missing or already finished: optuna's own errors
                found = conn.execute(sql.trial_state, {"b_tid": trial_id}).first()
                if found is None:
                    raise KeyError(f"trial {trial_id} not found")
                self.check_trial_is_updatable(trial_id, found.state)
                raise optuna.exceptions.StorageInternalError(
                    f"trial {trial_id} could not be finished")
            upsert = _upserts(self.engine.dialect.name)
            if user_attrs:
                if upsert is None:
                    conn.execute(sql.drop_user_attrs, {"b_tid": trial_id,
                                                       "keys": list(user_attrs)})
                conn.execute(upsert.user_attrs if upsert else sql.insert_user_attrs,
                             _attr_rows(trial_id, user_attrs))
            if values:
                if upsert is None:
                    conn.execute(sql.drop_values, {"b_tid": trial_id})
                conn.execute(upsert.values if upsert else sql.insert_values, [
                    dict(trial_id=trial_id, objective=i, value=stored, value_type=kind)
                    for i, (stored, kind) in enumerate(
                        models.TrialValueModel.value_to_stored_repr(v) for v in values)])

    def earlier_holders(self, study_id: int, trial_id: int, key: str, value: Any,
                        after_id: int = -1) -> list[int]:
        """Ids of the study's trials created after ``after_id`` and before ``trial_id`` whose
        system attribute ``key`` equals ``value``: one query (a range of the trial-id index)
        where a duplicate check would read the study."""
        with self.engine.connect() as conn:
            return list(conn.execute(_sql().holders, {
                "sid": study_id, "b_tid": trial_id, "after": after_id, "attr": key,
                "value": json.dumps(value)}).scalars())

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
        sql = _sql()
        dists = template.distributions
        start, complete = _utc(template.datetime_start), _utc(template.datetime_complete)
        with self.engine.begin() as conn:
            # the study row lock orders numbering between workers; SQLite has no row locks
            # (its writer lock, taken by the INSERT, does it) and the study is checked below
            if self.engine.dialect.name != "sqlite" \
                    and conn.execute(sql.lock_study, {"sid": study_id}).first() is None:
                raise KeyError(f"No study with study_id {study_id} exists.")
            pk = conn.execute(sql.insert_trial, dict(
                study_id=study_id, number=None, state=template.state,
                datetime_start=start, datetime_complete=complete)).inserted_primary_key
            if pk is None:  # a single-row INSERT always has one; typed Optional by SQLAlchemy
                raise optuna.exceptions.StorageInternalError("the new trial has no id")
            tid: int = pk[0]
            self._check_distributions(conn, study_id, dists)
            params = [dict(trial_id=tid, param_name=name,
                           param_value=dists[name].to_internal_repr(value),
                           distribution_json=distribution_to_json(dists[name]))
                      for name, value in template.params.items()]
            for stmt, rows in ((sql.insert_params, params),
                               (sql.insert_user_attrs, _attr_rows(tid, template.user_attrs)),
                               (sql.insert_system_attrs, _attr_rows(tid, template.system_attrs))):
                if rows:
                    conn.execute(stmt, rows)
            counted = conn.execute(sql.count_before, {"sid": study_id, "b_tid": tid}).one()
            number: int = counted[0]
            if counted[1] is None:  # no such study: rolls the insert back
                raise KeyError(f"No study with study_id {study_id} exists.")
            conn.execute(sql.set_number, {"b_tid": tid, "b_number": number})
        # optuna deep-copies the template; the distributions are immutable values, so only the
        # attribute dicts (JSON values a caller might still mutate) are copied deeply
        return FrozenTrial(number=number, state=template.state, value=None, values=None,
                           datetime_start=_local(start), datetime_complete=_local(complete),
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
        included = [i for i in included_trial_ids if i <= trial_id_greater_than]
        query = _trials_query(states is not None, trial_id_greater_than > -1, bool(included))
        # ``states`` is only a Container (optuna's signature): the states it holds, in enum order
        wanted = [s for s in TrialState if s in states] if states is not None else []
        args = {"sid": study_id, "states": wanted, "gt": trial_id_greater_than,
                "included": included}
        sql = _sql()
        with self.engine.connect() as conn:
            rows = conn.execute(query, args).all()
            if not rows:  # a study without trials (yet), or no study: optuna's KeyError
                if conn.execute(sql.study_row, {"sid": study_id}).first() is None:
                    raise KeyError(f"study {study_id} not found")
                return []
            children = conn.execute(sql.children, {"ids": [r.trial_id for r in rows]}).all()
        return _frozen_trials(rows, children)

    def _check_distributions(self, conn: Connection, study_id: int,
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
            for r in found:
                self._first_dists[(study_id, r.param_name)] = json_to_distribution(r.distribution_json)
        for name, dist in dists.items():
            known = self._first_dists.setdefault((study_id, name), dist)
            check_distribution_compatibility(known, dist)


_PARAM, _VALUE, _USER, _SYSTEM, _STEP = range(5)


def _children_query() -> Any:
    """One UNION ALL over the five child tables of the trials ``:ids``, as rows
    ``(kind, trial_id, name, idx, num, text, vtype, ord)`` ordered as optuna orders each table:
    one query instead of five (each SQL round trip costs ~0.2 ms on SQLite)."""
    from optuna.storages._rdb import models
    from sqlalchemy import Float, Integer, String, Text, bindparam, cast, literal, null, select, union_all

    trial_ids: BindParameter[int] = bindparam("ids", expanding=True)

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


@functools.cache
def _sql() -> SimpleNamespace:
    """The statements of the hot paths, built once with bound parameters (``b_`` names where a
    column of that name is also written)."""
    from optuna.storages._rdb import models
    from sqlalchemy import bindparam, delete, func, insert, select, update

    trials, studies = models.TrialModel.__table__, models.StudyModel.__table__
    user, system = models.TrialUserAttributeModel.__table__, \
        models.TrialSystemAttributeModel.__table__
    values = models.TrialValueModel.__table__
    tid: BindParameter[int] = bindparam("b_tid")
    unfinished = [s for s in TrialState if not s.is_finished()]
    study_row = select(studies.c.study_id).where(studies.c.study_id == bindparam("sid"))
    return SimpleNamespace(
        study_row=study_row,
        lock_study=study_row.with_for_update(),
        insert_trial=insert(trials),
        insert_params=insert(models.TrialParamModel.__table__),
        insert_user_attrs=insert(user),
        insert_system_attrs=insert(system),
        insert_values=insert(values),
        count_before=select(  # optuna's trial number, and whether the study exists
            select(func.count(trials.c.trial_id))
            .where(trials.c.study_id == bindparam("sid"), trials.c.trial_id < tid)
            .scalar_subquery(),
            select(studies.c.study_id).where(studies.c.study_id == bindparam("sid"))
            .scalar_subquery()),
        set_number=update(trials).where(trials.c.trial_id == tid)
        .values(number=bindparam("b_number")),
        finish=update(trials).where(trials.c.trial_id == tid, trials.c.state.in_(unfinished))
        .values(state=bindparam("b_state", type_=trials.c.state.type),
                datetime_complete=bindparam("b_done", type_=trials.c.datetime_complete.type)),
        trial_state=select(trials.c.state).where(trials.c.trial_id == tid),
        drop_user_attrs=delete(user).where(user.c.trial_id == tid,
                                           user.c.key.in_(bindparam("keys", expanding=True))),
        drop_values=delete(values).where(values.c.trial_id == tid),
        holders=select(system.c.trial_id).join(trials, trials.c.trial_id == system.c.trial_id)
        .where(trials.c.study_id == bindparam("sid"), system.c.trial_id < tid,
               system.c.trial_id > bindparam("after"),
               system.c.key == bindparam("attr"), system.c.value_json == bindparam("value")),
        children=_children_query())


@functools.cache
def _upserts(dialect: str) -> SimpleNamespace | None:
    """INSERT … ON CONFLICT DO UPDATE for user attributes and values where the dialect has it
    (SQLite, PostgreSQL): one statement each instead of a DELETE and an INSERT. ``None``
    elsewhere (those take the DELETE + INSERT path)."""
    if dialect not in ("sqlite", "postgresql"):
        return None
    from importlib import import_module

    from optuna.storages._rdb import models

    insert = import_module(f"sqlalchemy.dialects.{dialect}").insert

    def upsert(table: Any, unique: tuple[str, ...], columns: tuple[str, ...]) -> Any:
        stmt = insert(table)
        return stmt.on_conflict_do_update(index_elements=list(unique),
                                          set_={c: stmt.excluded[c] for c in columns})

    return SimpleNamespace(
        user_attrs=upsert(models.TrialUserAttributeModel.__table__, ("trial_id", "key"),
                          ("value_json",)),
        values=upsert(models.TrialValueModel.__table__, ("trial_id", "objective"),
                      ("value", "value_type")))


@functools.cache
def _trials_query(with_states: bool, with_newer: bool, with_included: bool) -> Any:
    """Trials of study ``:sid`` [in ``:states``] [with id > ``:gt`` or in ``:included``], in
    id order: the shapes of ``RDBStorage._get_trials``' query, each built once."""
    from optuna.storages._rdb import models
    from sqlalchemy import bindparam, or_, select

    trials = models.TrialModel.__table__
    where = [trials.c.study_id == bindparam("sid")]
    if with_states:
        where.append(trials.c.state.in_(bindparam("states", expanding=True)))
    if with_newer:
        newer = trials.c.trial_id > bindparam("gt")
        where.append(or_(trials.c.trial_id.in_(bindparam("included", expanding=True)), newer)
                     if with_included else newer)
    return select(trials).where(*where).order_by(trials.c.trial_id)


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
