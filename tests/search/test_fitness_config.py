"""Fitness functions, configs and the CLI's error paths and outputs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from automtl.config import load_config
from automtl.errors import ConfigError
from automtl.registry import EVALUATORS, SPACES, build
from automtl.search import DeltaM, WeightedSum, build_fitness, check_budget, t_score
from automtl.search.config import build_job

ROOT = Path(__file__).resolve().parents[2]


def test_t_score_is_plain_sum():
    assert t_score()({"cls": 70.0, "det": 30.0, "seg": 40.0}) == pytest.approx(140.0)


def test_weighted_sum_and_direction():
    f = WeightedSum({"a": 2.0, "b": 1.0}, higher_is_better={"b": False})
    assert f({"a": 1.0, "b": 3.0}) == pytest.approx(2.0 - 3.0)
    with pytest.raises(ConfigError, match="'c'"):
        WeightedSum({"c": 1.0})({"a": 1.0})


def test_delta_m_matches_formula():
    f = DeltaM({"seg": 40.0, "depth": 0.5}, lower_is_better={"depth": True})
    # seg +10% better, depth 20% worse (higher error) → (10 - 20)/2 = -5
    assert f({"seg": 44.0, "depth": 0.6}) == pytest.approx(-5.0)
    assert f({"seg": 40.0, "depth": 0.5}) == pytest.approx(0.0)
    with pytest.raises(ConfigError):
        DeltaM({"seg": 0.0})


def test_build_fitness():
    assert isinstance(build_fitness("t_score"), WeightedSum)
    assert isinstance(build_fitness(dict(type="delta_m", baselines={"a": 1.0})), DeltaM)
    with pytest.raises(ConfigError, match="fitness.type"):
        build_fitness(dict(type="nope"))
    with pytest.raises(ConfigError, match="fitness.baselines"):
        build_fitness(dict(type="delta_m"))


BASE = dict(space=dict(type="toy_layered"), evaluator=dict(type="toy"),
            search=dict(budget=(20_000, 40_000), generations=1, population=4, top_k=2,
                        n_mutations=2, n_crossovers=2))


@pytest.mark.parametrize("drop,key", [("space", "space"), ("evaluator", "evaluator"),
                                      ("search", "search")])
def test_config_missing_key(tmp_path, drop, key):
    cfg = {k: v for k, v in BASE.items() if k != drop}
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        build_job(cfg, work_dir=str(tmp_path), progress=False)


def test_config_bad_values(tmp_path):
    cfg = dict(BASE, search={k: v for k, v in BASE["search"].items() if k != "budget"})
    with pytest.raises(ConfigError, match="search.budget"):
        build_job(cfg, work_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="search.populaton"):
        build_job(dict(BASE, search=dict(BASE["search"], populaton=3)), work_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="space.type"):
        build_job(dict(BASE, space=dict(type="nope")), work_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="space"):
        build_job(dict(BASE, space=dict(type="toy_layered", bogus=1)), work_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="search.mode"):
        build_job(dict(BASE, search=dict(BASE["search"], mode="annealing")), work_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.py")


@pytest.mark.slow
def test_cli_end_to_end_outputs(tmp_path):
    work = tmp_path / "w"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cfg = tmp_path / "small.py"   # the shipped config, fewer generations (mmengine inheritance)
    cfg.write_text(f"_base_ = [{str(ROOT / 'configs/search/toy_exact.py')!r}]\n"
                   "search = dict(generations=4)\n")
    cmd = [sys.executable, "-m", "automtl", "search", str(cfg), "--work-dir", str(work),
           "--seed", "3", "--no-progress", "--storage", f"journal:{tmp_path / 'j.log'}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "80 candidates evaluated" in out.stdout
    for name in ("best.json", "trials.csv", "result.json", "search.json", "search.png",
                 "search.log", "config.py"):
        assert (work / name).is_file(), name
    rows = list(csv.DictReader(open(work / "trials.csv")))
    assert len(rows) == 80 and {r["state"] for r in rows} == {"COMPLETE"}
    result = json.loads((work / "result.json").read_text())
    best = json.loads((work / "best.json").read_text())
    assert best == result["best"]["candidate"]
    assert max(float(r["fitness"]) for r in rows) == pytest.approx(result["best"]["fitness"])
    assert (work / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((work / "tb").glob("events.out.tfevents.*"))       # tensorboard scalars
    assert "seed = 3" in (work / "config.py").read_text() or "seed=3" in (work / "config.py").read_text()
    # a second run without --resume is a typed error, not a silent continuation
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "SearchError" in again.stderr and "--resume" in again.stderr


def test_cli_help_and_bad_storage(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    tool = str(ROOT / "tools" / "search.py")
    h = subprocess.run([sys.executable, tool, "--help"], capture_output=True, text=True, env=env)
    assert h.returncode == 0 and "--storage" in h.stdout and "--resume" in h.stdout
    bad = subprocess.run([sys.executable, tool, str(ROOT / "configs/search/toy_exact.py"),
                          "--work-dir", str(tmp_path), "--storage", "journal:/no/such/dir/x.log"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "SearchError" in bad.stderr and "/no/such/dir" in bad.stderr


@pytest.mark.slow
def test_toy_synthetic_config_smoke(tmp_path):
    """DESIGN §4: configs/search/toy_synthetic.py runs end to end on CPU (tiny ViT-MVT supernet)."""
    work = tmp_path / "w"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "tools" / "search.py"),
           str(ROOT / "configs" / "search" / "toy_synthetic.py"), "--work-dir", str(work),
           "--no-progress", "--no-tensorboard"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "40 candidates evaluated, 0 failed" in out.stdout
    from search_spaces.vit_mvt import load_subnet

    space = build(SPACES, dict(load_config(ROOT / "configs/search/toy_synthetic.py").space),
                  key="space")
    best = load_subnet(work / "best_subnet.yaml", space)
    total = space.count_params(best)["total"]
    assert 280_000 <= total <= 420_000
    assert (work / "supernet.pt").is_file() and (work / "search.png").is_file()


@pytest.mark.parametrize("name", ["toy_exact", "toy_synthetic", "policy_synthetic"])
def test_shipped_configs_build_a_satisfiable_space(name):
    """Every shipped config loads, names known types, and its budget window is reachable."""
    cfg = load_config(ROOT / "configs" / "search" / f"{name}.py")
    space = build(SPACES, dict(cfg.space), key="space")
    assert cfg.evaluator["type"] in EVALUATORS
    lo, hi = check_budget(space, cfg.search["budget"])
    small, large = space.param_range()
    assert small <= hi and lo <= large
