"""MLoReModel: the MLoRE decoder as the heads of AutoMTL's CNN supernet and of ViT-MVT; trains
through tools/train.py configs, reloads exactly, refuses levels the backbone does not produce."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automtl.__main__ import main
from automtl.backbones import TinyResNet
from automtl.config import load_config
from automtl.errors import ConfigError
from automtl.io import safe_load
from automtl.models import build_mlore_model, stage_ends, tap_levels
from automtl.supernet import Policy
from automtl.supernet.registration import build_model
from automtl.train.steps import auxiliary_loss_modules

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "automtl"
TINY = ["data.n_train=8", "data.n_val=4", "data.batch_size=4", "post_train.iters=3",
        "trainer.progress=False", "trainer.tensorboard=False", "trainer.checkpoint_iters=0"]
TASKS = ["segment_semantic", "depth_zbuffer"]
VIT = dict(type="vit_mvt", preset=None, name="micro", depths=(3,), embeds=(16,), heads=(1,), mlp_ratios=(2.0,),
           img_size=32)
SMALL = dict(channels=8, ranks=(2, 4, 8), top_k=2)


def run(config: str, work: Path, *extra: str) -> dict:
    assert main(["train", str(CONFIGS / config), "--work-dir", str(work), "--cfg-options", *TINY, *extra]) == 0
    return json.loads((work / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("config, extra", [
    ("synthetic_mlore_tinyresnet.py", ["data.size=16", "model.input_shape=[1,3,16,16]"]),
    ("synthetic_mlore_vit_mvt.py", ["data.size=32", "model.input_shape=[1,3,32,32]",
                                    "model.backbone.img_size=32"]),
])
def test_config_trains_and_its_checkpoint_reloads_exactly(config, extra, tmp_path, capsys):
    work = tmp_path / "run"
    out = run(config, work, *extra)
    tasks = out["tasks"]
    assert out["params"]["total"] < sum(out["params"][t] for t in tasks)  # shared parts counted once
    log = (work / "train.log").read_text()
    assert all(f"aux_loss/{t}=" in log for t in tasks)  # the balance loss reached the trainer
    capsys.readouterr()
    policy = work / "post_train_policy.json"
    assert main(["test", str(CONFIGS / config), str(work / "post_train.pt"), "--policy", str(policy),
                 "--cfg-options", *TINY, *extra]) == 0
    assert json.loads(capsys.readouterr().out) == out["results"]  # same metrics from the reloaded weights

    cfg = load_config(work / "config.py")
    state = safe_load(work / "post_train.pt")["model"]
    model = build_model(cfg.model, cfg.tasks)
    model.load_state_dict(state)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    model.eval()
    chosen = Policy.load(policy, model=model)
    x = torch.randn(2, 3, 32, 32) if "vit" in config else torch.randn(2, 3, 16, 16)
    fused = model.reparameterize(chosen)
    with torch.no_grad():
        for t in tasks:
            torch.testing.assert_close(fused(x, t), model(x, task=t, stage="fixed", policy=chosen),
                                       rtol=1e-4, atol=1e-5)


def test_stage_ends_are_the_levels_of_a_cnn():
    net, names, channels = tap_levels(TinyResNet((4, 8, 16)), (1, 3, 16, 16), None)
    assert channels == [4, 8, 16] and len(names) == 3
    levels = net(torch.zeros(2, 3, 16, 16))
    assert [tuple(f.shape) for f in levels] == [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)]
    assert stage_ends([("a", (1, 2, 8, 8)), ("b", (1, 4, 8, 8)), ("c", (1, 4, 4, 4)), ("d", (1, 9))]) == [
        ("b", (1, 4, 8, 8)), ("c", (1, 4, 4, 4))]


@pytest.mark.parametrize("backbone", [dict(type="TinyResNet", widths=(4, 8)), VIT])
def test_model_follows_the_mtl_model_contract(backbone):
    torch.manual_seed(0)
    model = build_mlore_model(TASKS, backbone=backbone, levels=(0, -1), decoder=SMALL, input_shape=(1, 3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    assert model.policy_layers and set(model.heads) == set(TASKS)
    heads = {id(p) for h in model.heads.values() for p in h.parameters()}
    assert heads and heads < {id(p) for p in model.weight_parameters()}
    assert not {id(p) for p in model.policy_parameters()} & {id(p) for p in model.weight_parameters()}
    out = model(x, task="depth_zbuffer", stage="pre")
    assert out.shape[:2] == (2, 1)
    (reporter,) = auxiliary_loss_modules(model)
    aux = reporter.auxiliary_losses()
    assert set(aux) == {"mlore_balance"} and aux["mlore_balance"].requires_grad
    assert reporter.auxiliary_losses()["mlore_balance"] is aux["mlore_balance"]  # same object until the next forward
    (out.mean() + model.policy_regularizer()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy_parameters())
    share = Policy.all(model, "share")
    counts = model.count_params(share)
    dec = model.decoder.count_params()
    assert counts["total"] - dec["total"] == model.trunk.count_params(share)["total"]
    assert model.count_params(Policy.all(model, "specialize"))["total"] > counts["total"]
    model.eval()  # no router noise, running BatchNorm statistics
    everything = model.forward_all(x, share)
    torch.testing.assert_close(everything["segment_semantic"],
                               model(x, task="segment_semantic", stage="fixed", policy=share))
    levels = model(x, task="segment_semantic", stage="common")
    assert [f.shape[1] for f in levels] == list(model.decoder.in_channels)


@pytest.mark.parametrize("backbone, levels, produced", [
    (dict(type="TinyResNet", widths=(4, 8)), (0, 2), "2 stage ends"),
    (VIT, (1, 3), "3 blocks"),
    (VIT, (-4,), "3 blocks"),
])
def test_a_level_the_backbone_does_not_produce_is_a_config_error(backbone, levels, produced):
    with pytest.raises(ConfigError) as exc:
        build_model(dict(type="MLoReModel", backbone=backbone, levels=levels, decoder=SMALL,
                         input_shape=(1, 3, 32, 32)), TASKS)
    bad = [i for i, lv in enumerate(levels) if lv not in (0, 1, -1)][0]
    assert exc.value.key == f"model.levels.{bad}" and produced in str(exc.value)


def test_bad_decoder_settings_name_their_keys():
    base = dict(type="MLoReModel", backbone=dict(type="TinyResNet", widths=(4, 8)), input_shape=(1, 3, 16, 16))
    for decoder, key in [(dict(channels=4, ranks=(2, 8)), "model.decoder.ranks.1"),
                         (dict(channels=8, ranks=(2, 4), top_k=3), "model.decoder.top_k"),
                         (dict(channels=8, ranks=(2,), in_channels=[3]), "model.decoder.in_channels")]:
        with pytest.raises(ConfigError) as exc:
            build_model({**base, "decoder": decoder}, TASKS)
        assert exc.value.key == key
    with pytest.raises(ConfigError) as exc:
        build_model({**base, "backbone": {**VIT, "arch": {"share.0.qkv.depth_zbuffer": "shared"}}}, TASKS)
    assert exc.value.key.startswith("model.backbone.arch.share.")
