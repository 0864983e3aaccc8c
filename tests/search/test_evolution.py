"""Evolution on optuna: budget, duplicates, parents, params, failures, modes."""
from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from automtl.errors import ConfigError, SearchError
from automtl.search import EvolutionSampler, EvolutionSearch, EvolutionSettings, ToyEvaluator
from automtl.search.evaluators import Evaluator
from automtl.search.samplers import CANDIDATE, KEY, ORIGIN
from automtl.spaces import LayeredToySpace

BUDGET = (20_000, 40_000)  # as in conftest


def _complete(search):
    return search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def test_all_candidates_in_budget_unique_and_recorded(make_search, toy):
    s = make_search()
    res = s.run(n_generations=4)
    done = _complete(s)
    assert len(done) == 40 == res.n_complete
    keys = [t.system_attrs[KEY] for t in done]
    assert len(set(keys)) == len(keys)
    for t in done:
        cand = t.system_attrs[CANDIDATE]
        total = toy.count_params(cand)["total"]
        assert BUDGET[0] <= total <= BUDGET[1]
        assert t.user_attrs["params_total"] == total and t.user_attrs["feasible"] is True
        assert t.user_attrs["candidate"] == cand
        assert t.params == cand                      # genes are optuna params (variable length)
        assert t.constraints == {"params_window": max(BUDGET[0] - total, total - BUDGET[1])}
        assert t.constraints["params_window"] <= 0
        assert t.value == pytest.approx(sum(toy.scores(cand).values()))


def test_generations_and_operators(make_search):
    s = make_search()
    s.run(n_generations=3)
    gen_key = s.sampler._get_generation_key()
    by_gen = {}
    for t in _complete(s):
        by_gen.setdefault(t.system_attrs[gen_key], []).append(t)
    assert sorted(by_gen) == [0, 1, 2] and all(len(v) == 10 for v in by_gen.values())
    assert {t.system_attrs[ORIGIN] for t in by_gen[0]} == {"random"}
    later = [t.system_attrs[ORIGIN] for g in (1, 2) for t in by_gen[g]]
    assert later.count("mutation") >= 5 and "crossover" in later


def test_parents_are_top_k_with_elitism(make_search):
    s = make_search()
    s.run(n_generations=3)
    gen0 = s.sampler.get_population(s.study, 0)
    parents1 = s.sampler.get_parent_population(s.study, 1)
    best3 = sorted(gen0, key=lambda t: -t.value)[:3]
    assert {t.number for t in parents1} == {t.number for t in best3}
    parents2 = s.sampler.get_parent_population(s.study, 2)
    pool = s.sampler.get_population(s.study, 1) + parents1
    assert sorted(t.value for t in parents2) == sorted(t.value for t in pool)[-3:]


def test_evolution_finds_known_optimum(make_search, toy):
    _, optimum = toy.optimum(BUDGET)
    s = make_search(population=20, top_k=5, n_mutations=10, n_crossovers=10)
    res = s.run(n_generations=10)
    assert res.best_fitness >= 0.99 * optimum
    assert BUDGET[0] <= res.best_params["total"] <= BUDGET[1]


def test_out_of_budget_children_resampled_not_evaluated(toy):
    calls = []

    class Counting(ToyEvaluator):
        def evaluate(self, cand):
            calls.append(toy.count_params(cand)["total"])
            return super().evaluate(cand)

    settings = EvolutionSettings(budget=(30_000, 32_000), population=6, top_k=2, n_mutations=3,
                                 n_crossovers=3)
    sampler = EvolutionSampler(toy, settings, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    ev = Counting(toy)
    study.optimize(lambda tr: sum(ev.evaluate(sampler.candidate(study, tr)).values()),
                   n_trials=18)
    assert sampler.assigner.proposer.n_rejected > 0
    assert calls and all(30_000 <= n <= 32_000 for n in calls)


def test_budget_no_arch_satisfies(make_search, toy):
    lo, hi = toy.param_range()
    with pytest.raises(SearchError, match=f"smallest has {lo:,} and the largest {hi:,}"):
        make_search(budget=(hi + 1, hi + 100))
    with pytest.raises(SearchError, match="smallest"):
        make_search(budget=(0, lo - 1))
    with pytest.raises(ConfigError, match="search.budget.*empty"):
        make_search(budget=(5, 4))
    with pytest.raises(ConfigError, match="search.budget.*min_params, max_params"):
        make_search(budget=100)


def test_window_with_a_gap_is_reported_before_evaluation(toy):
    # every size in the toy space is even-ish; a one-parameter window inside the range holds none
    sizes = {toy.count_params(toy.sample(random.Random(i)))["total"] for i in range(300)}
    n = next(x for x in range(min(sizes), max(sizes)) if x not in sizes)
    calls = []

    class Never(Evaluator):
        tasks = toy.tasks

        def evaluate(self, cand):
            calls.append(cand)
            return {}

    settings = EvolutionSettings(budget=(n, n), population=4, top_k=2, n_mutations=2,
                                 n_crossovers=2, max_random_tries=300)
    s = EvolutionSearch(toy, Never(), settings, storage="memory", progress=False, seed=0)
    with pytest.raises(SearchError, match="no unseen candidate"):
        s.run(n_generations=1)
    assert calls == []


class Flaky(ToyEvaluator):
    """Raises for every candidate of depth 2."""

    def evaluate(self, cand):
        if cand["depth"] == 2:
            raise RuntimeError(f"boom at depth {cand['depth']}")
        return super().evaluate(cand)


def test_failing_candidate_recorded_and_search_goes_on(make_search, toy):
    s = make_search(Flaky(toy))
    res = s.run(n_generations=3)
    failed = s.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert failed and res.n_failed == len(failed)
    assert all("RuntimeError: boom at depth 2" in t.user_attrs["error"] for t in failed)
    assert res.n_complete == 30
    keys = [t.system_attrs[KEY] for t in s.study.trials]
    assert len(set(keys)) == len(keys)                 # failed ones are not retried either


def test_broken_evaluator_stops_with_typed_error(make_search, toy):
    class Broken(Evaluator):
        tasks = toy.tasks

        def evaluate(self, cand):
            raise ValueError("nope")

    s = make_search(Broken(), max_consecutive_failures=5)
    with pytest.raises(SearchError, match="5 evaluations failed in a row"):
        s.run(n_generations=1)


def test_nan_score_is_a_failure(make_search, toy):
    class Nan(ToyEvaluator):
        def evaluate(self, cand):
            out = super().evaluate(cand)
            if cand["depth"] == 3:
                out["cls"] = float("nan")
            return out

    s = make_search(Nan(toy))
    s.run(n_generations=2)
    failed = s.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert failed and all("non-finite" in t.user_attrs["error"] for t in failed)


def test_pareto_mode(make_search, toy):
    s = make_search(mode="pareto")
    res = s.run(n_generations=3)
    assert len(s.study.directions) == 3
    done = _complete(s)
    assert len(done) == 30
    assert res.pareto
    vals = {r.number: (r.scores["cls"], r.scores["seg"], r.params["total"]) for r in res.trials
            if r.state == "COMPLETE"}
    front = {r.number for r in res.pareto}
    for n in front:      # no completed trial dominates a front member
        a = vals[n]
        assert not any(b[0] >= a[0] and b[1] >= a[1] and b[2] <= a[2] and b != a
                       for b in vals.values())
    for t in done:
        assert BUDGET[0] <= t.values[2] <= BUDGET[1]
    assert res.best is not None


def test_random_mode_is_random_and_in_budget(make_search):
    s = make_search(mode="random")
    s.run(n_generations=2)
    origins = {t.system_attrs[ORIGIN] for t in _complete(s)}
    assert origins == {"random"}


def test_in_process_resume_keeps_trials(make_search, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    s1 = make_search(storage=url, study_name="r")
    s1.run(n_generations=2)
    first = {t.number: (t.system_attrs[KEY], t.value) for t in _complete(s1)}
    with pytest.raises(SearchError, match="already exists"):
        make_search(storage=url, study_name="r")
    s2 = make_search(storage=url, study_name="r", resume=True, seed=1)
    s2.run(n_generations=4)
    done = _complete(s2)
    assert len(done) == 40
    assert all(first[t.number] == (t.system_attrs[KEY], t.value) for t in done if t.number in first)
    keys = [t.system_attrs[KEY] for t in done]
    assert len(set(keys)) == len(keys)


def test_study_of_another_space_refused(make_search, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_search(storage=url, study_name="x").run(n_generations=1)
    other = LayeredToySpace(depths=(2, 3))
    with pytest.raises(SearchError, match="signature"):
        EvolutionSearch(other, ToyEvaluator(other), EvolutionSettings(budget=BUDGET),
                        storage=url, study_name="x", resume=True, progress=False)
    with pytest.raises(SearchError, match="budget"):
        make_search(storage=url, study_name="x", resume=True, budget=(21_000, 40_000))


def test_foreign_study_refused(make_search, tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    st = optuna.create_study(storage=url, study_name="plain", direction="maximize")
    st.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with pytest.raises(SearchError, match="not made by an automtl search"):
        make_search(storage=url, study_name="plain", resume=True)


@pytest.mark.parametrize("url", ["sqlite:////nonexistent_dir_xyz/a.db", "journal:/nonexistent_dir_xyz/a.log",
                                 "notascheme", "nosuchdialect://u@h/db"])
def test_bad_storage_url(make_search, url):
    with pytest.raises(SearchError, match="cannot open storage|does not exist"):
        make_search(storage=url)


def test_sqlite_url_in_a_missing_directory_names_it(make_search):
    with pytest.raises(SearchError, match="directory '/nonexistent_dir_xyz' does not exist"):
        make_search(storage="sqlite:////nonexistent_dir_xyz/a.db")
