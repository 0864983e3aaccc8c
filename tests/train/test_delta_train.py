"""The three delta-sharing steps as trainer phases, through a config (``tools/train.py`` path):
the density after step 2 is the target, step 3's thresholds hold at inference, the phase
weights store ΔW sparse and reload exactly, a resume skips finished steps; bad settings are
typed errors naming their key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automtl.__main__ import main
from automtl.cli.run_delta import build_delta_model, check_delta_config, run_delta_config
from automtl.config import config_kind, load_config
from automtl.delta import delta_density
from automtl.errors import ConfigError, ModelError
from automtl.train.delta_phases import deltas_by_task
from automtl.train.resume import load_model_state

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs/automtl/synthetic_delta_smoke.py"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("delta_smoke")
    return work, run_delta_config(str(SMOKE), work_dir=work)


def test_the_three_steps_reach_the_target_density_and_the_threshold(smoke_run):
    work, out = smoke_run
    cfg = load_config(SMOKE)
    assert config_kind(cfg) == "delta"
    density = cfg["delta"]["density"]
    assert out["delta_density"] == pytest.approx(density, abs=1e-3)
    assert set(out["results"]) >= {"segment_semantic", "depth_zbuffer"}
    flops = out["flops"]
    assert flops["weight_density"]["depth_zbuffer"] == pytest.approx(density, abs=1e-3)
    assert flops["skipped"] == flops["dense_total"] - flops["total"] > 0
    for step in ("delta_train", "delta_support_train", "delta_act_train"):
        assert (work / f"{step}.pt").is_file()
    log = (work / "train.log").read_text()
    assert "support of 'depth_zbuffer' fixed at density" in log and "aux_loss/depth_zbuffer" in log
    saved = json.loads((work / "results.json").read_text())
    assert saved["params"] == out["params"]


def test_phase_weights_store_the_deltas_sparse_and_reload_exactly(smoke_run):
    work, out = smoke_run
    plan = check_delta_config(load_config(SMOKE), path=str(SMOKE))
    state = torch.load(work / "delta_act_train.pt", weights_only=False)["model"]
    assert any(k.endswith(".delta.depth_zbuffer.index") for k in state)
    assert not any(k.endswith(".delta.depth_zbuffer.delta") or "log_alpha" in k for k in state)
    dense = torch.load(work / "delta_train.pt", weights_only=False)["model"]
    assert any("log_alpha" in k for k in dense)  # step 1 still holds the L0 gates
    model, policy = build_delta_model(plan)  # fresh: dense deltas with gates
    load_model_state(model, state, "delta_act_train.pt")
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    own = deltas_by_task(model, policy)["depth_zbuffer"]
    assert delta_density(own) == pytest.approx(plan.delta.density, abs=1e-3)
    assert all(float(d.threshold) == pytest.approx(plan.delta.threshold) for d in own)
    assert model.count_params(policy) == out["params"]


def test_automtl_test_reports_the_trained_deltas_as_the_train_run_did(smoke_run, capsys):
    work, out = smoke_run
    ckpt = str(work / "delta_act_train.pt")
    capsys.readouterr()
    assert main(["test", str(SMOKE), ckpt]) == 0
    assert json.loads(capsys.readouterr().out) == out["results"]
    assert main(["test", str(SMOKE), ckpt, "--eval", "mIoU", "abs_err", "--out", str(work / "test.json")]) == 0
    chosen = {"segment_semantic": {"mIoU": out["results"]["segment_semantic"]["mIoU"]},
              "depth_zbuffer": {"abs_err": out["results"]["depth_zbuffer"]["abs_err"]}}
    assert json.loads(capsys.readouterr().out) == chosen == json.loads((work / "test.json").read_text())
    assert main(["test", str(SMOKE), ckpt, "--eval", "miou"]) == 2
    assert "unknown metric(s) ['miou']" in capsys.readouterr().err
    assert main(["test", str(SMOKE), str(work / "delta_train.pt")]) == 0  # step 1: dense ΔW with gates
    assert set(json.loads(capsys.readouterr().out)) == set(out["results"])


def test_a_resume_skips_the_finished_steps(smoke_run):
    work, out = smoke_run
    again = run_delta_config(str(SMOKE), work_dir=work, resume=True)
    assert again["params"] == out["params"]
    assert again["results"]["depth_zbuffer"] == pytest.approx(out["results"]["depth_zbuffer"])


@pytest.mark.parametrize(("option", "key"), [
    ("delta.base=edges", "delta.base"),
    ("delta.density=0.0", "delta.density"),
    ("delta.density=1.5", "delta.density"),
    ("delta.threshold=-0.1", "delta.threshold"),
    ("delta.thresholds={'stem.0':-1.0}", "delta.thresholds.stem.0"),
    ("delta.mask='l2'", "delta.mask"),
    ("delta_support_train.iters=0", "delta_support_train.iters"),
])
def test_bad_delta_settings_name_their_key(option, key):
    with pytest.raises(ConfigError) as info:
        check_delta_config(load_config(SMOKE, [option]), path=str(SMOKE))
    assert info.value.key == key


def test_trainer_phases_refuse_bad_input(tmp_path):
    from automtl.data import build_data
    from automtl.metrics import default_metrics
    from automtl.supernet.registration import build_model
    from automtl.train import Trainer
    from automtl.train.losses import default_criteria

    plan = check_delta_config(load_config(SMOKE), path=str(SMOKE))
    train, val = build_data(plan.data, plan.tasks, seed=0)
    plain = build_model(plan.model, plan.tasks)
    trainer = Trainer(plain, train, val, default_criteria(plan.tasks), default_metrics(plan.tasks),
                      work_dir=tmp_path, progress=False, tensorboard=False)
    with pytest.raises(ModelError, match="add_deltas"):
        trainer.delta_train(iters=1)
    plain.add_deltas("segment_semantic")
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        trainer.delta_support_train(iters=1, density=2.0)
    with pytest.raises(ConfigError, match=">= 0"):
        trainer.delta_act_train(iters=1, threshold=-0.5)
    with pytest.raises(ConfigError, match="l0"):
        trainer.delta_train(iters=1, mask="l2")
    trainer.close()
