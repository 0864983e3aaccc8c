"""Shared fixtures of the search tests: a small toy space and a fast search factory."""
from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]
try:  # an editable install made before search_spaces/ existed does not map it
    import search_spaces  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the package was installed
    sys.path.insert(0, str(ROOT))

from automtl.search import EvolutionSearch, LayeredToySpace, ToyEvaluator

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUDGET = (20_000, 40_000)
SMALL = dict(population=10, top_k=3, n_mutations=5, n_crossovers=5)


@pytest.fixture(scope="session")
def toy() -> LayeredToySpace:
    return LayeredToySpace()


@pytest.fixture
def make_search(toy):
    made = []

    def make(evaluator=None, **kw):
        args = dict(budget=BUDGET, storage="memory", seed=0, progress=False, **SMALL)
        args.update(kw)
        s = EvolutionSearch(toy, evaluator or ToyEvaluator(toy), **args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
