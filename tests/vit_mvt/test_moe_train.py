"""M3ViT-style training: the micro MoE config runs through ``python -m automtl train``'s runner,
and the balance loss reaches supernet training on its own."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "supernet" / "m3vit_micro_synthetic.py"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.slow
def test_m3vit_micro_config_trains(tmp_path):
    from automtl.cli.run_supernet import run_supernet_config
    from automtl.io import safe_load

    out = run_supernet_config(CONFIG, work_dir=tmp_path, cfg_options={"supernet_train.steps": 2,
                                                                       "data.n_train": 16})
    assert out["steps"] == 2 and out["tasks"] == ["segment_semantic", "depth_zbuffer", "normal"]
    assert all(torch.isfinite(torch.tensor(h)) for h in [out["final_loss"]])
    state = safe_load(Path(out["supernet"]))["state_dict"]
    assert state["blocks.1.moe.w1"].shape == (4, 48, 48)        # 4 experts of hidden 48
    assert "blocks.1.fc1.weight" not in state and "blocks.0.moe.w1" not in state


def test_balance_loss_alone_trains_the_routers():
    """With task losses that carry no gradient, the routers and what feeds them change (through
    the balance loss) but neither the experts nor the heads: the auxiliary loss reaches the
    optimiser."""
    from automtl.data.synthetic import make_loaders
    from automtl.registry import SPACES, build
    from automtl.train.supernet import train_supernet

    tasks = ("segment_semantic", "depth_zbuffer")
    space = build(SPACES, dict(type="vit_mvt", preset=None, name="moe", tasks=tasks,
                               num_outputs=dict(segment_semantic=5, depth_zbuffer=1), depths=(2,),
                               embeds=(16,), heads=(1,), mlp_ratios=(2.0,), img_size=32,
                               ffn_layout=("dense", "moe"), num_experts=(4,), top_ks=(2,),
                               moe=dict(aux_weight=1.0)), key="space")
    torch.manual_seed(0)
    net = space.build_supernet()
    loaders = make_loaders(tasks, size=32, n_train=8, n_val=4, batch_size=4, seed=0)[0]
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    zero = {t: (lambda pred, y: pred.sum() * 0.0) for t in tasks}
    train_supernet(net, space, loaders, steps=2, sampling="uniform", criteria=zero, weight_decay=0.0,
                   device="cpu")
    changed = {k for k, v in net.named_parameters() if not torch.equal(v, before[k])}
    assert {f"blocks.1.moe.router.weight.{t}" for t in tasks} <= changed
    assert not changed & {"blocks.1.moe.w1", "blocks.1.moe.b1", "blocks.1.moe.w2", "blocks.1.moe.b2",
                          *(f"head_w.{t}" for t in tasks)}
