"""Shared fixtures of the search tests: a small toy space and a fast search factory."""
from __future__ import annotations

import optuna
import pytest

from automtl.search import EvolutionSearch, EvolutionSettings, ToyEvaluator
from automtl.spaces import LayeredToySpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUDGET = (20_000, 40_000)
SMALL = dict(population=10, top_k=3, n_mutations=5, n_crossovers=5)


@pytest.fixture(scope="session")
def toy() -> LayeredToySpace:
    return LayeredToySpace()


@pytest.fixture
def make_search(toy):
    """``make_search(evaluator=None, **kw)``: a small search of the toy space in memory; ``kw``
    holds settings (``EvolutionSettings`` fields, validated from a dict) and search options."""
    made = []

    def make(evaluator=None, **kw):
        settings = dict(budget=BUDGET, **SMALL)
        settings.update({k: kw.pop(k) for k in list(kw) if k in EvolutionSettings.model_fields})
        options = dict(storage="memory", seed=0, progress=False)
        options.update(kw)
        s = EvolutionSearch(toy, evaluator or ToyEvaluator(toy), settings, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
