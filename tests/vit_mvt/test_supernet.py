"""The elastic supernet: forward shapes, elastic slicing, sharing gates and their gradients."""
from __future__ import annotations

import random

import pytest
import torch

from automtl.errors import ArchError, UnknownTaskError
from search_spaces.vit_mvt import build_supernet, format_sharing_report


def test_forward_all_shapes(micro, micro_net):
    x = torch.randn(2, 3, 64, 64)
    out = micro_net.forward_all(x)
    assert set(out) == {"cls", "seg"}
    assert out["cls"].shape == (2, 10)
    assert out["seg"].shape == (2, 5, 64, 64)
    assert torch.equal(micro_net(x, task="cls"), out["cls"])


def test_other_input_size_resizes_pos_embed_and_rel_bias(micro_net):
    for size in (48, 96):  # grids 3×3 (inside the 4×4 table) and 6×6 (table resized)
        out = micro_net.forward_all(torch.randn(1, 3, size, size))
        assert out["seg"].shape == (1, 5, size, size)
        assert torch.isfinite(out["cls"]).all()


def test_unknown_task(micro_net):
    with pytest.raises(UnknownTaskError, match="det"):
        micro_net(torch.randn(1, 3, 64, 64), task="det")
    with pytest.raises(UnknownTaskError, match="forward_all"):
        micro_net(torch.randn(1, 3, 64, 64))


def test_set_arch_rejects_bad_arch(micro, micro_net):
    with pytest.raises(ArchError, match="num_heads.0"):
        micro_net.set_arch({**micro.smallest(), "num_heads.0": 4})
    with pytest.raises(ArchError, match="depth.0"):
        micro_net.set_arch({**micro.smallest(), "depth.0": 5})


def test_weight_entanglement_uses_leading_slices(micro, micro_net):
    """The smallest subnet's output only depends on the leading slices of the weights."""
    x = torch.randn(1, 3, 64, 64)
    micro_net.set_arch(micro.smallest())
    before = micro_net.forward_all(x)
    blk = micro_net.blocks[0]
    with torch.no_grad():
        blk.fc1.weight[64:].normal_()       # hidden units beyond 32·1.0 = 32 … and 64
        blk.fc1.weight[:, 32:].normal_()     # input channels beyond E = 32
        blk.qkv.weight.view(2, 3, 64, 48)[1].normal_()      # the second head's q, k, v
        micro_net.blocks[2].fc2.weight.normal_()             # a layer beyond depth 2
    after = micro_net.forward_all(x)
    assert all(torch.equal(before[t], after[t]) for t in before)
    with torch.no_grad():
        blk.qkv.weight.view(2, 3, 64, 48)[0, 2, 0, 0] += 1.0  # first head's v: used
    assert not torch.equal(before["cls"], micro_net.forward_all(x)["cls"])


def test_fixed_sharing_selects_weights(micro, micro_net):
    x = torch.randn(1, 3, 64, 64)
    c = micro.smallest()
    micro_net.set_arch(c)
    shared = micro_net.forward_all(x)
    with torch.no_grad():
        micro_net.blocks[0].fc1.task_weight["seg"].normal_()
    assert torch.equal(shared["seg"], micro_net(x, "seg"))  # seg still uses the shared fc1
    micro_net.set_arch({**c, "share.0.fc1.seg": "specific"})
    assert not torch.equal(shared["seg"], micro_net(x, "seg"))
    assert torch.equal(shared["cls"], micro_net(x, "cls"))
    assert micro_net.sharing_report()["share.0.fc1.seg"] == "specific"


def test_learned_scores_gate_with_straight_through(micro, micro_net):
    arch = {k: v for k, v in micro.smallest().items() if not k.startswith("share.")}
    micro_net.set_arch(arch)
    assert not micro_net.fixed_sharing
    lin = micro_net.blocks[0].proj
    with torch.no_grad():
        lin.task_weight["cls"].normal_()
    x = torch.randn(2, 3, 64, 64)
    micro_net.train()
    micro_net(x, "cls").pow(2).mean().backward()
    g = lin.score["cls"].grad
    assert g is not None and g.abs() > 0          # the hard gate passes a gradient
    assert lin.task_weight["cls"].grad is None       # unused task weight: no gradient
    assert lin.score["seg"].grad is None or lin.score["seg"].grad == 0
    micro_net.eval()
    y_shared = micro_net(x, "cls")
    with torch.no_grad():
        lin.score["cls"].fill_(0.2)
    assert micro_net.sharing_report()["share.0.proj.cls"] == "specific"
    assert micro_net.sharing_report()["share.0.proj.seg"] == "shared"
    assert not torch.equal(y_shared, micro_net(x, "cls"))
    text = format_sharing_report(micro_net.sharing_report())
    assert "layer" in text and "T" in text.splitlines()[2]


def test_out_indices_maps(micro, micro_net):
    micro_net.set_arch(micro.canonical({**micro.largest()}))
    maps = micro_net.forward_features(torch.randn(2, 3, 64, 64), "seg", out_indices=(0, 1, -1))
    assert [tuple(m.shape) for m in maps] == [(2, 48, 4, 4)] * 3
    assert not torch.equal(maps[0], maps[2])
    with pytest.raises(ArchError, match="out_indices"):
        micro_net.forward_features(torch.randn(1, 3, 64, 64), "seg", out_indices=(3,))


def test_training_step_runs_with_drop_path(micro):
    torch.manual_seed(0)
    net = build_supernet(micro, drop_path_rate=0.2).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    rng = random.Random(0)
    for _ in range(2):
        net.set_arch({k: v for k, v in micro.sample(rng).items() if not k.startswith("share.")})
        out = net.forward_all(torch.randn(2, 3, 64, 64))
        loss = out["cls"].logsumexp(1).mean() + out["seg"].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)


def test_build_supernet_with_other_tasks(micro):
    net = build_supernet(micro, tasks=("seg", "depth"))
    assert net.tasks == ("seg", "depth")
    assert net.space.num_outputs == {"seg": 5, "depth": 1}
    single = build_supernet(micro, tasks=("cls",))
    assert not hasattr(single.blocks[0].qkv, "task_weight")


def test_straight_through_gradient_matches_soft_formula(micro, micro_net):
    """The hard select's gradients equal those of ``g·W_s + (1-g)·W_t`` with g = hard + s - sg(s)."""
    arch = {k: v for k, v in micro.smallest().items() if not k.startswith("share.")}
    micro_net.set_arch(arch)
    lin = micro_net.blocks[1].fc1
    with torch.no_grad():
        lin.task_weight["seg"].normal_()
        lin.task_bias["seg"].normal_()
    x = torch.randn(2, 3, 64, 64)

    def soft(task):
        s = lin.score[task]
        g = (s > 0.5).to(s.dtype) + s - s.detach()
        ws, bs = lin._slice(lin.weight, lin.bias)
        wt, bt = lin._slice(lin.task_weight[task], lin.task_bias[task])
        return g * ws + (1 - g) * wt, g * bs + (1 - g) * bt

    tensors = [lin.score["seg"], lin.weight, lin.task_weight["seg"], lin.bias, lin.task_bias["seg"]]
    for score in (0.9, 0.3):
        with torch.no_grad():
            lin.score["seg"].fill_(score)
        grads = []
        for use_soft in (False, True):
            micro_net.zero_grad()
            if use_soft:
                lin.params = soft  # type: ignore[method-assign]
            try:
                y = micro_net(x, "seg")
                y.pow(2).mean().backward()
            finally:
                lin.__dict__.pop("params", None)
            grads.append([torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in tensors])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert grads[0][0].abs() > 0
