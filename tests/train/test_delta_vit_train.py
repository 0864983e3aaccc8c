"""Delta sharing on ViT-MVT task networks through the front door (``automtl train`` / ``automtl
test`` on ``configs/automtl/synthetic_delta_vit_mvt.py``): the three steps put sparse deltas on
every block's attention and MLP projections, their penalties reach the loss, the weights store
ΔW sparse, ``automtl test`` reports what the train run reported, and the model runs only its
delta policy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automtl.__main__ import main
from automtl.cli.run_delta import build_delta_model, check_delta_config
from automtl.config import config_kind, load_config
from automtl.errors import ConfigError, PolicyError
from automtl.supernet import Policy
from automtl.supernet.flops import flop_report

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/automtl/synthetic_delta_vit_mvt.py"
TINY = ["data.n_train=8", "data.n_val=4", "data.batch_size=4", "delta.density=0.2", "delta_train.iters=3",
        "delta_support_train.iters=2", "delta_act_train.iters=2", "trainer.progress=False",
        "trainer.tensorboard=False", "trainer.print_iters=1"]
PROJECTIONS = ("qkv", "proj", "fc1", "fc2")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("delta_vit")
    assert main(["train", str(CONFIG), "--work-dir", str(work), "--cfg-options", *TINY]) == 0
    return work, json.loads((work / "results.json").read_text())


def test_the_three_steps_put_sparse_deltas_on_the_vit_projections(vit_run):
    work, out = vit_run
    assert config_kind(load_config(CONFIG)) == "delta"
    policy = json.loads((work / "policy.json").read_text())
    layers = list(policy["policy"])
    assert len(layers) == 2 * len(PROJECTIONS)  # two blocks
    assert all(name.startswith("blocks.") and name.rsplit(".", 1)[-1] in PROJECTIONS for name in layers)
    assert all(row == {"segment_semantic": "share", "depth_zbuffer": "delta", "normal": "delta"}
               for row in policy["policy"].values())
    assert out["delta_density"] == pytest.approx(0.2, abs=1e-3)
    flops = out["flops"]
    for task in ("depth_zbuffer", "normal"):
        assert flops["weight_density"][task] == pytest.approx(0.2, abs=1e-3)
        assert 0 < flops["delta_effective"][task] < flops["delta_dense"][task]
    assert flops["skipped"] == flops["dense_total"] - flops["total"] > 0
    base = flops["per_task"]["segment_semantic"]
    assert flops["total"] == base + sum(flops["per_task"][t] - base for t in ("depth_zbuffer", "normal"))
    assert set(out["results"]) == {"segment_semantic", "depth_zbuffer", "normal"}
    log = (work / "train.log").read_text()
    step1 = [line for line in log.splitlines() if line.split(" ")[2:3] == ["delta_train"] and "iter" in line]
    assert step1 and all("aux_loss/depth_zbuffer" in line for line in step1)  # L0 penalties of F.linear calls
    state = torch.load(work / "delta_act_train.pt", weights_only=False)["model"]
    assert "nets.depth_zbuffer.blocks.0.qkv.delta.index" in state
    assert not any(k.startswith("nets.depth_zbuffer.") and "log_alpha" in k for k in state)
    assert not any(k.startswith("nets.segment_semantic.") and ".delta." in k for k in state)


def test_automtl_test_reports_what_the_train_run_reported(vit_run, capsys):
    work, out = vit_run
    capsys.readouterr()
    assert main(["test", str(CONFIG), str(work / "delta_act_train.pt"), "--cfg-options", *TINY]) == 0
    assert json.loads(capsys.readouterr().out) == out["results"]


def test_the_model_counts_sparse_deltas_and_runs_only_its_delta_policy():
    plan = check_delta_config(load_config(CONFIG, TINY), path=str(CONFIG))
    model, policy = build_delta_model(plan)
    assert model.check_policy(policy) is policy and model.argmax_policy() == policy
    before = model.count_params(policy)
    sub = "depth_zbuffer"
    with torch.no_grad():
        model.weight_delta("blocks.0.fc1", sub).delta.data[0, :5] = 1.0
    after = model.count_params(policy)
    assert after[sub] == before[sub] + 5 and after["total"] == before["total"] + 5
    assert after["segment_semantic"] == sum(p.numel() for p in model.nets["segment_semantic"].parameters())
    with pytest.raises(PolicyError, match="fixed policy"):
        model.set_policy(policy.replace({("blocks.0.qkv", sub): "share"}))
    with pytest.raises(PolicyError, match="no delta"):
        model.weight_delta("blocks.0.qkv", "segment_semantic")
    for d in model.weight_deltas(policy):  # no threshold: every changed activation is a delta
        d.set_threshold(0.0)
    x = torch.randn(2, 3, 32, 32)
    report = flop_report(model.eval(), x, Policy.delta(model, plan.delta.base))
    assert report.activation_density[sub] > 0 and report.dense_total >= report.total


@pytest.mark.parametrize(("option", "key"), [
    ("delta.layers=['blocks.0.qkv','blocks.9.fc1']", "delta.layers.1"),
    ("model.arch={'depth': 5}", "model.arch"),
    ("model.space.tasks=['cls']", "model.space.tasks"),
])
def test_bad_settings_of_task_networks_name_their_key(option, key):
    cfg = load_config(CONFIG, [*TINY, option])
    with pytest.raises(ConfigError) as info:
        build_delta_model(check_delta_config(cfg, path=str(CONFIG)))
    assert info.value.key == key


def test_delta_layers_of_task_networks_may_name_any_linear_or_conv():
    cfg = load_config(CONFIG, [*TINY, "delta.layers=['stem.0','blocks.1.fc2']"])
    model, _ = build_delta_model(check_delta_config(cfg, path=str(CONFIG)))
    assert model.layer_names == ["stem.0", "blocks.1.fc2"]
    model.eval()
    with torch.no_grad():
        for d in model.weight_deltas():
            d.delta.normal_(0, 0.02)
        x = torch.randn(2, 3, 32, 32)
        dense = model(x, task="normal")  # merged weights, no base pass
        routed = model.forward_all(x)["normal"]  # the module conv and the F.linear projection on the base's
    assert torch.allclose(routed, dense, atol=1e-5)
    assert all(layer.delta.last_activation for layer in model.delta_layers("normal"))
