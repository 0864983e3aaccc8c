"""One-write trial creation: bulk RDB templates, the generation rule, duplicates across workers."""
from __future__ import annotations

import datetime as dt
import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.samplers import BaseGASampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import SearchError
from automtl.search.samplers import DUPLICATE, KEY, is_live, next_generation
from automtl.search.storage import BulkRDBStorage, open_storage


def _template(**params) -> FrozenTrial:
    dists = {k: CategoricalDistribution([1, 2, 3]) for k in params}
    t = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                    datetime_start=dt.datetime(2026, 1, 2, 3, 4, 5), datetime_complete=None,
                    params=dict(params), distributions=dists,
                    user_attrs={"candidate": dict(params), "params": {"total": 7}},
                    system_attrs={KEY: "k", "gen": 0}, intermediate_values={}, trial_id=-1)
    t.set_constraint("params_window", -3.0)
    return t


def _view(t: FrozenTrial) -> tuple:
    return (t.number, t.state, t.params, t.distributions, t.user_attrs, t.system_attrs,
            t.datetime_start, t.constraints)


def test_bulk_rdb_template_reads_back_as_optunas(tmp_path):
    bulk = open_storage(f"sqlite:///{tmp_path / 'bulk.db'}")
    assert isinstance(bulk, BulkRDBStorage)
    plain = RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}")
    got = []
    for st in (bulk, plain):
        study = optuna.create_study(storage=st, study_name="s")
        sid = study._study_id
        st.create_new_trial(sid)                                   # numbering counts it
        for i in range(3):
            study._storage.create_new_trial(sid, template_trial=_template(a=1 + i % 3, b=2))
        got.append([_view(t) for t in study._storage.get_all_trials(sid)])
    assert got[0][1:] == got[1][1:]                                # the template trials
    assert [v[0] for v in got[0]] == [0, 1, 2, 3]


def test_bulk_rdb_created_trial_is_what_a_read_returns(tmp_path):
    """The FrozenTrial ``_create_new_trial`` hands to optuna's cache equals a fresh read."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    bulk = open_storage(url)
    sid = optuna.create_study(storage=bulk, study_name="s")._study_id
    made = bulk._create_new_trial(sid, template_trial=_template(a=2, b=3))
    read = RDBStorage(url).get_trial(made._trial_id)
    assert _view(made) == _view(read) and made._trial_id == read._trial_id
    with pytest.raises(KeyError):
        bulk._create_new_trial(sid + 1, template_trial=_template(a=1))
    import sqlite3  # nothing of it was kept
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("SELECT count(*) FROM trials").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM trial_params").fetchone()[0] == 2


def test_bulk_rdb_numbers_stay_unique_across_concurrent_workers(tmp_path):
    """Trial numbers are assigned inside the creating transaction: 4 workers (own engines)
    creating at once get the numbers 0..n-1 exactly once, in trial-id order."""
    import threading

    url = f"sqlite:///{tmp_path / 'n.db'}"
    sid = optuna.create_study(storage=open_storage(url), study_name="s")._study_id
    stores = [open_storage(url) for _ in range(4)]
    start = threading.Barrier(4)

    def work(st):
        start.wait()
        for i in range(10):
            st._create_new_trial(sid, template_trial=_template(a=1 + i % 3))

    threads = [threading.Thread(target=work, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trials = RDBStorage(url).get_all_trials(sid)
    by_id = sorted(trials, key=lambda t: t._trial_id)
    assert [t.number for t in by_id] == list(range(40))


def test_bulk_rdb_checks_distributions_against_the_study(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'b.db'}")
    study = optuna.create_study(storage=st, study_name="s")
    tid = st.create_new_trial(study._study_id)
    st.set_trial_param(tid, "a", 0.5, FloatDistribution(0, 1))     # a is a float in the study
    fresh = open_storage(f"sqlite:///{tmp_path / 'b.db'}")         # another process: no cache
    with pytest.raises(ValueError):
        fresh.create_new_trial(study._study_id, template_trial=_template(a=1))
    assert len(fresh.get_all_trials(study._study_id)) == 1        # nothing half-written


def _trial(number: int, state: TrialState, gen: int | None, key: str = "G") -> FrozenTrial:
    attrs = {} if gen is None else {key: gen}
    return FrozenTrial(number=number, state=state, value=1.0 if state == TrialState.COMPLETE
                       else None, values=None, datetime_start=None, datetime_complete=None,
                       params={}, distributions={}, user_attrs={}, system_attrs=attrs,
                       intermediate_values={}, trial_id=number)


class _Study:
    def __init__(self, trials):
        self.trials = trials

    def _get_trials(self, deepcopy, states, use_cache):
        return [t for t in self.trials if t.state in states]


class _Storage:
    def set_trial_system_attr(self, *args):
        pass


def test_next_generation_is_optunas_rule():
    rng = random.Random(0)

    class GA(BaseGASampler):
        select_parent = infer_relative_search_space = sample_relative = sample_independent = None

    key = GA._get_generation_key()

    states = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]
    for _ in range(300):
        pop = rng.randint(1, 4)
        trials = [_trial(i, rng.choice(states), rng.choice([None, 0, 1, 1, 2, 2, 2]), key)
                  for i in range(rng.randint(0, 12))]
        study = _Study(trials)
        study._storage = _Storage()
        expected = GA(pop).get_trial_generation(study, _trial(99, TrialState.RUNNING, None))
        assert next_generation(trials, key, pop) == expected


def _storage_url(kind: str, tmp_path) -> str:
    return "memory" if kind == "memory" else f"sqlite:///{tmp_path / 'race.db'}"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_later_trial_holding_a_taken_key_gives_way(make_search, kind, tmp_path):
    """Another worker creates a trial with the same candidate between our read and our write:
    ours (created later, higher number) is PRUNED and marked, the candidate drawn again."""
    s = make_search(storage=_storage_url(kind, tmp_path))
    storage, sid = s.study._storage, s.study._study_id
    real = storage.create_new_trial
    rivals = []

    def racing(study_id, template_trial=None):
        if not rivals and template_trial is not None:        # the other worker is quicker
            rival = _copy(template_trial)
            rivals.append(real(study_id, template_trial=rival))
        return real(study_id, template_trial=template_trial)

    storage.create_new_trial = racing
    trial, cand = s.sampler.create_trial(s.study, storage.get_all_trials(sid, deepcopy=False))
    ts = {t._trial_id: t for t in storage.get_all_trials(sid, deepcopy=False)}
    rival = ts[rivals[0]]
    lost = [t for t in ts.values() if t.system_attrs.get(DUPLICATE)]
    assert len(lost) == 1 and lost[0].state == TrialState.PRUNED and not is_live(lost[0])
    assert lost[0].system_attrs[KEY] == rival.system_attrs[KEY] and lost[0].number > rival.number
    assert is_live(rival) and rival.state == TrialState.RUNNING     # the earlier one keeps it
    assert trial.number > lost[0].number and trial.system_attrs[KEY] != rival.system_attrs[KEY]
    assert s.space.key(cand) == trial.system_attrs[KEY]


def test_rdb_checks_for_rivals_with_one_query_instead_of_a_read(make_search, tmp_path):
    """On SQLite a trial nobody else holds is accepted without re-reading the study, and is
    what a read returns; ``earlier_holders`` finds an earlier trial holding the key."""
    s = make_search(storage=_storage_url("sqlite", tmp_path))
    storage, sid = s.study._storage, s.study._study_id
    real_create, real_read = storage.create_new_trial, storage.get_all_trials
    created, reads_after = [], []

    def create(study_id, template_trial=None):
        created.append(real_create(study_id, template_trial=template_trial))
        return created[-1]

    def read(*args, **kwargs):
        if created:
            reads_after.append(args)
        return real_read(*args, **kwargs)

    storage.create_new_trial, storage.get_all_trials = create, read
    trial, cand = s.sampler.create_trial(s.study, real_read(sid, deepcopy=False))
    assert created == [trial._trial_id] and reads_after == []
    back = RDBStorage(_storage_url("sqlite", tmp_path)).get_trial(trial._trial_id)
    assert _view(trial) == _view(back)
    backend, key = storage._backend, trial.system_attrs[KEY]
    assert backend.earlier_holders(sid, trial._trial_id, KEY, key) == []
    later = real_create(sid, template_trial=_copy(trial))
    assert backend.earlier_holders(sid, later, KEY, key) == [trial._trial_id]
    assert backend.earlier_holders(sid, later, KEY, key + "x") == []
    assert backend.earlier_holders(sid, later, KEY, key, after_id=trial._trial_id) == []


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_duplicate_given_up_trials_do_not_count(make_search, kind, tmp_path):
    s = make_search(storage=_storage_url(kind, tmp_path))
    storage = s.study._storage
    real = storage.create_new_trial
    made = []

    def racing(study_id, template_trial=None):              # every 7th draw meets a rival
        if template_trial is not None and len(made) % 7 == 3:
            made.append(real(study_id, template_trial=_copy(template_trial)))
            storage.set_trial_state_values(made[-1], TrialState.FAIL)   # the rival then fails
        made.append(None)
        return real(study_id, template_trial=template_trial)

    storage.create_new_trial = racing
    res = s.run(n_generations=2)
    done = s.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = s.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    assert len(done) == 20 == res.n_complete and pruned
    assert res.n_failed == len(s.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    keys = [t.system_attrs[KEY] for t in s.study.trials if is_live(t)]
    assert len(set(keys)) == len(keys)


def _copy(t: FrozenTrial) -> FrozenTrial:
    import copy

    return copy.deepcopy(t)


def test_nan_fitness_is_a_failure(make_search, toy):
    from automtl.search.fitness import Fitness

    class NanFit(Fitness):
        def __call__(self, scores):
            return float("nan")

        def describe(self):
            return {"type": "nan"}

    s = make_search(fitness=NanFit(), max_consecutive_failures=3)
    with pytest.raises(SearchError, match="3 evaluations failed"):
        s.run(n_generations=1)
    failed = s.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert len(failed) == 3 and all("NaN" in t.user_attrs["error"] for t in failed)


def test_bulk_rdb_reads_trials_as_optuna_does(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(storage=RDBStorage(url), study_name="s",
                                directions=["maximize", "minimize"])

    def objective(trial):
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        trial.suggest_int("n", 1, 9)
        trial.suggest_categorical("act", ["relu", "gelu", None])
        trial.set_user_attr("u", {"a": [1, 2], "x": x})
        trial.storage.set_trial_system_attr(trial._trial_id, "s", trial.number)
        steps = {0: float("nan") if trial.number % 2 else x, 3: float("inf")}
        for step, v in steps.items():
            trial.storage.set_trial_intermediate_value(trial._trial_id, step, v)
        if trial.number == 3:
            raise optuna.TrialPruned()
        if trial.number == 4:
            raise RuntimeError("fail")
        return (float("inf") if trial.number == 2 else x), -float(trial.number)

    study.optimize(objective, n_trials=6, catch=(RuntimeError,))
    study.enqueue_trial({"x": 0.5})
    study.ask()                                                     # a RUNNING trial
    study.enqueue_trial({"x": 0.25})                                # a WAITING one
    plain, bulk = RDBStorage(url), open_storage(url)
    sid = study._study_id
    for args in [(None, set(), -1), ((TrialState.COMPLETE,), set(), -1), (None, {2, 4}, 3),
                 (None, set(), 5), ((TrialState.RUNNING, TrialState.FAIL), {1}, 2)]:
        want = plain._get_trials(sid, *args)
        got = bulk._get_trials(sid, *args)
        assert [_full(t) for t in got] == [_full(t) for t in want] and want, args
    with pytest.raises(KeyError):
        bulk._get_trials(sid + 1, None, set(), -1)


def _full(t: FrozenTrial) -> tuple:
    nan_safe = {k: ("nan" if v != v else v) for k, v in t.intermediate_values.items()}
    return (_view(t), t._trial_id, t.values, t.datetime_complete, nan_safe)



@pytest.mark.parametrize("kind", ["bulk_rdb", "bulk_rdb_delete_insert", "memory"])
def test_finish_trial_records_what_optunas_calls_record(tmp_path, kind, monkeypatch):
    """One-transaction finish (RDB, with upserts or, for dialects without them, DELETE +
    INSERT) and the fallback (other storages) leave the trial as set_trial_user_attr +
    set_trial_state_values would (an existing attribute replaced), and refuse a finished
    trial."""
    import automtl.search.storage.rdb as rdb
    from automtl.search.storage import finish_trial

    if kind == "bulk_rdb_delete_insert":
        monkeypatch.setattr(rdb, "_upserts", lambda dialect: None)
    url = f"sqlite:///{tmp_path / 'f.db'}" if kind.startswith("bulk_rdb") else "memory"
    mine = optuna.create_study(storage=open_storage(url), study_name="s",
                               directions=["maximize", "minimize"])
    ref = optuna.create_study(storage=RDBStorage(f"sqlite:///{tmp_path / 'ref.db'}"),
                              study_name="s", directions=["maximize", "minimize"])
    attrs = {"scores": {"cls": 0.5, "seg": 0.25}, "fitness": 0.75}
    cases = [(TrialState.COMPLETE, [1.5, -2.0], attrs), (TrialState.FAIL, None, {"error": "E"}),
             (TrialState.PRUNED, None, {}),
             (TrialState.COMPLETE, [float("inf"), 0.0], {"params": {"total": 9}})]  # replaced
    for state, values, user_attrs in cases:
        for study in (mine, ref):
            st = study._storage
            tid = st.create_new_trial(study._study_id, template_trial=_template(a=1))
            if study is mine:
                finish_trial(st, tid, state, values, user_attrs)
            else:
                for k, v in user_attrs.items():
                    st.set_trial_user_attr(tid, k, v)
                st.set_trial_state_values(tid, state, values)
    got, want = mine.get_trials(), ref.get_trials()
    assert [(t.state, t.values, t.user_attrs, t.params) for t in got] == \
           [(t.state, t.values, t.user_attrs, t.params) for t in want]
    now = dt.datetime.now()                                         # naive local, as optuna's
    assert all(abs((t.datetime_complete - now).total_seconds()) < 60 for t in got)
    with pytest.raises(RuntimeError, match="finished"):
        finish_trial(mine._storage, got[0]._trial_id, TrialState.FAIL, None, {"error": "again"})
    assert mine.get_trials()[0].state == TrialState.COMPLETE


def test_second_worker_creating_the_schema_meanwhile_is_not_an_error(tmp_path):
    """Optuna creates its tables on first open; when another worker creates them between our
    existence check and our CREATE TABLE (the race CI once hit: 'table studies already
    exists'), opening must still succeed. The other worker is made to win deterministically."""
    from optuna.storages._rdb import models
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'race.db'}"
    raced = []

    def other_worker_wins(*_args, **_kwargs) -> None:
        if not raced:
            raced.append(True)
            RDBStorage(url).engine.dispose()  # creates every table before our CREATE runs

    event.listen(models.BaseModel.metadata, "before_create", other_worker_wins)
    try:
        storage = open_storage(url)
    finally:
        event.remove(models.BaseModel.metadata, "before_create", other_worker_wins)
    assert raced
    assert storage.get_all_studies() == []
    optuna.create_study(study_name="after", storage=storage)
    assert [s.study_name for s in storage.get_all_studies()] == ["after"]
