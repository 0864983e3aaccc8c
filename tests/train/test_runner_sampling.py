"""Config runner, tools/train.py, policy sampling within a budget and tools/sample_policy.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import make_loaders, mse_metrics, tiny_model

from automtl.cli.run_automtl import check_config, run_config
from automtl.config import load_config
from automtl.errors import ConfigError, SearchError
from automtl.train.policy_sampling import choose_policy, reference_params, sample_candidates

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "automtl" / "smoke.py"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    return work, run_config(SMOKE, work_dir=work, seed=1)


def test_run_config_writes_every_output(smoke_run):
    work, out = smoke_run
    for name in ("config.py", "pre_train.pt", "alter_train_with_reg.pt", "post_train.pt", "policy.json",
                 "policy.png", "results.json", "train.log", "trainer_config.json"):
        assert (work / name).is_file(), name
    assert load_config(work / "config.py")["seed"] == 1
    assert set(out["results"]) == {"segment_semantic", "depth_zbuffer"}
    assert out["params"]["total"] <= json.loads((work / "results.json").read_text())["params"]["total"]


def test_resume_skips_finished_phases_and_reproduces(smoke_run):
    work, out = smoke_run
    before = (work / "train.log").read_text().count("iterations 0->")
    again = run_config(SMOKE, work_dir=work, seed=1, resume=True)
    assert (work / "train.log").read_text().count("iterations 0->") == before  # nothing retrained
    assert again["results"] == out["results"] and again["params"] == out["params"]


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("tasks = ['depth_zbuffer']\nmodel = dict(backbone=dict(type='TinyResNet'))\nfoo = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.py.*key 'foo'.*unknown top-level key"):
        run_config(bad, work_dir=tmp_path / "w")
    bad.write_text("tasks = ['depth_zbuffer']\nmodel = dict(backbone=dict(type='Nope'))\n")
    with pytest.raises(ConfigError, match="Nope"):
        run_config(bad, work_dir=tmp_path / "w")


def test_tools_train_cli(tmp_path):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    help_ = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--help"], capture_output=True,
                           text=True, env=env)
    assert help_.returncode == 0 and "--resume" in help_.stdout and "--work-dir" in help_.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(tmp_path / "missing.py")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "missing.py" in bad.stderr


def test_budget_filter_scoring_and_errors(tmp_path):
    model = tiny_model()
    torch.nn.init.normal_(model.logits, std=1.0)
    ref = reference_params(model)
    limit = int(0.8 * ref)
    cands = sample_candidates(model, 12, max_params=limit)
    assert cands and all(c.params <= limit for c in cands)
    assert len({c.policy.key() for c in cands}) == len(cands)
    _, val = make_loaders()
    report = choose_policy(model, 12, budget=0.8, val_loaders=val, metrics=mse_metrics())
    assert report.chosen.score == max(c.score for c in report.candidates)
    assert report.chosen.params <= limit and report.scored_by == "primary metrics"
    with pytest.raises(SearchError, match="none of 3 sampled policies"):
        choose_policy(model, 3, max_params=10)


@pytest.mark.slow
def test_tools_sample_policy_cli(smoke_run, tmp_path):
    work, _ = smoke_run
    out = tmp_path / "pick"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "sample_policy.py"), str(SMOKE),
                           str(work / "alter_train_with_reg.pt"), "--n", "5", "--budget", "1.0", "--score",
                           "--out", str(out)], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "chosen: seed" in proc.stdout
    assert (out / "policy.json").is_file() and (out / "policy.png").is_file()
    assert (out / "policy_candidates.tsv").read_text().count("*") == 1


@pytest.mark.parametrize("name", ["synthetic_tinyresnet.py", "synthetic_deeplab_resnet34.py"])
def test_shipped_configs_build_their_model(name):
    from automtl.supernet.registration import build_model

    cfg = load_config(ROOT / "configs" / "automtl" / name)
    check_config(cfg)
    model = build_model(cfg["model"], cfg["tasks"])
    size = cfg["data"]["size"]
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size), task=cfg["tasks"][0], stage="pre")
    assert out.shape[0] == 1 and out.shape[-1] >= size // 8
    for key in ("pre_train", "alter_train_with_reg", "sample", "post_train"):
        assert key in cfg
