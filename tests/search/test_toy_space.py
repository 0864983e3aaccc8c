"""The toy layered space: protocol behaviour, exact counting, known optimum."""
from __future__ import annotations

import random

import pytest

from automtl.errors import ArchError, ConfigError
from automtl.search import ToyEvaluator
from automtl.spaces import LayeredToySpace


@pytest.fixture(scope="module")
def space() -> LayeredToySpace:
    return LayeredToySpace()


def test_sample_is_valid_and_counted(space):
    rng = random.Random(0)
    for _ in range(200):
        c = space.sample(rng)
        space.validate(c)
        n = space.count_params(c)
        lo, hi = space.param_range()
        assert lo <= n["total"] <= hi
        assert set(n) == {"cls", "seg", "total"}
        assert max(n["cls"], n["seg"]) <= n["total"] <= n["cls"] + n["seg"]


def test_shared_layers_counted_once(space):
    c = {"depth": 2, "embed": 16, "ratio.0": 2, "ratio.1": 2,
         "share.0.cls": "share", "share.0.seg": "share", "share.1.cls": "share", "share.1.seg": "share"}
    p = space.layer_params(16, 2)
    base = space.count_params(c)
    assert base["total"] == 8 * 16 + 2 * (10 * 16 + 10) + 2 * p
    c2 = dict(c, **{"share.1.seg": "specialize"})
    assert space.count_params(c2)["total"] == base["total"] + p   # one more copy
    c3 = dict(c2, **{"share.1.cls": "specialize"})
    assert space.count_params(c3)["total"] == base["total"] + p   # two private copies, no shared one
    assert space.count_params(c3)["cls"] == base["cls"]


def test_mutation_and_crossover_stay_in_space(space):
    rng = random.Random(1)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(100):
        m = space.mutate(a, rng, p_layer=0.5, p_global=0.5)
        space.validate(m)
        assert m is not a
    while not space.can_crossover(a, b):
        b = space.sample(rng)
    child = space.crossover(a, b, rng)
    space.validate(child)
    assert all(child[k] in (a[k], b[k]) for k in child)


def test_mutation_probabilities(space):
    rng = random.Random(2)
    a = space.sample(rng)
    assert space.mutate(a, rng, p_layer=0.0, p_global=0.0) == a


def test_validate_names_the_key(space):
    c = space.sample(random.Random(3))
    with pytest.raises(ArchError, match="embed"):
        space.validate(dict(c, embed=17))
    bad = dict(c)
    bad.pop("ratio.0")
    with pytest.raises(ArchError, match="ratio.0"):
        space.validate(bad)
    with pytest.raises(ArchError, match="ratio.9"):
        space.validate(dict(c, **{"ratio.9": 2}))


def test_key_is_canonical(space):
    c = space.sample(random.Random(4))
    assert space.key(c) == space.key(dict(reversed(list(c.items()))))
    assert space.key(c) != space.key(space.mutate(c, random.Random(5), p_layer=1.0))


def test_known_optimum_small_space():
    space = LayeredToySpace(depths=(1, 2), embeds=(16, 32), ratios=(2, 4))
    budget = (3000, 12000)
    best, val = space.optimum(budget)
    brute = max(sum(space.scores(c).values()) for c in space.enumerate()
                if budget[0] <= space.count_params(c)["total"] <= budget[1])
    assert val == pytest.approx(brute)
    assert sum(ToyEvaluator(space).evaluate(best).values()) == pytest.approx(val)
    assert len(list(space.enumerate())) == 2 * (4 * 2 + (4 * 2) ** 2)


def test_signature_differs_between_spaces(space):
    assert space.signature() == LayeredToySpace().signature()
    assert space.signature() != LayeredToySpace(depths=(2, 3)).signature()


@pytest.mark.parametrize("kwargs,key", [
    (dict(depths=(-1, 2)), "depths"), (dict(depths=(0,)), "depths"),
    (dict(depths=(10**6,)), "depths"), (dict(embeds=(-16, 24)), "embeds"),
    (dict(ratios=(0, 2)), "ratios"), (dict(ratios=(2.5,)), "ratios"),
    (dict(ratios=(True,)), "ratios"), (dict(depths=()), "depths"), (dict(depths="23"), "depths"),
    (dict(tasks="cls"), "tasks"), (dict(tasks=("cls", "cls")), "tasks"),
    (dict(tasks=("cls", "")), "tasks"), (dict(seed="x"), "seed"),
])
def test_bad_space_arguments_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError) as info:
        LayeredToySpace(**kwargs)
    assert info.value.key == key


def test_toy_evaluator_delay_is_seconds(space):
    for bad in (-1, -0.5, float("inf"), float("nan"), "1", True, None):
        with pytest.raises(ConfigError, match="seconds") as info:
            ToyEvaluator(space, delay=bad)
        assert info.value.key == "delay"
    assert ToyEvaluator(space, delay=0).delay == 0.0
