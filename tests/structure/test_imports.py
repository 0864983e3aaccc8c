"""The package structure holds: no import cycle, imports run one way, light imports stay light."""
import subprocess
import sys

import pytest
from import_graph import cycles, unit_graph

#: dependency rank of each unit: a unit may import only units of a strictly lower rank
RANK = {
    "automtl.errors": 0, "automtl._lazy": 0, "automtl.io": 1, "automtl.checks": 1,
    "automtl.registry": 1,
    "automtl.workdir": 2, "automtl.config": 2,
    "automtl.graph": 2, "automtl.data": 3, "automtl.backbones": 3, "automtl.heads": 4,
    "automtl.metrics": 4, "automtl.delta": 4, "automtl.supernet": 5, "automtl.spaces": 6, "automtl.viz": 6,
    "search_spaces.vit_mvt": 7, "automtl.train": 7, "automtl.search": 8, "automtl.mm": 8, "automtl.models": 8,
    "automtl.cli": 9,
    "automtl.__main__": 10, "automtl": 10, "search_spaces": 10,
}


def test_no_package_level_import_cycle():
    assert cycles(unit_graph()) == []


def test_every_unit_has_a_rank():
    assert sorted(set(unit_graph()) - set(RANK)) == []


def test_imports_run_one_way():
    upward = sorted((src, dst) for src, dsts in unit_graph().items() for dst in dsts
                    if RANK.get(dst, 99) >= RANK[src])
    assert upward == []


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("code", [
    "import search_spaces.vit_mvt",
    "from search_spaces.vit_mvt import build_space; build_space('tiny').count_params("
    "build_space('tiny').largest())",
    "import automtl, automtl.search, automtl.spaces",
])
def test_light_imports_do_not_load_the_search_engine(code):
    loaded = _modules_after(code)
    assert "optuna" not in loaded
    assert "torch" not in loaded
