"""The M3ViT mixture-of-experts layer: reordered dispatch against the per-token loop, noisy
top-k gating, the balance loss, the two router designs, auxiliary losses and bad input."""
from __future__ import annotations

import pytest
import torch

from automtl.errors import ArchError, ConfigError, UnknownTaskError
from search_spaces.vit_mvt import MoEFFN, MoESettings, SpaceConfig
from search_spaces.vit_mvt import _moe_dispatch as D
from search_spaces.vit_mvt._moe import accumulating
from search_spaces.vit_mvt._moe_dispatch import dispatch_per_token, dispatch_reordered
from search_spaces.vit_mvt._moe_gate import balance_loss, cv_squared, noisy_top_k

TASKS = ("seg", "depth")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _experts(n_exp: int, d: int, h: int, gen: torch.Generator) -> list[torch.Tensor]:
    ws = [torch.randn(n_exp, h, d, generator=gen, dtype=torch.float64),
          torch.randn(n_exp, h, generator=gen, dtype=torch.float64),
          torch.randn(n_exp, d, h, generator=gen, dtype=torch.float64),
          torch.randn(n_exp, d, generator=gen, dtype=torch.float64)]
    return [w.requires_grad_() for w in ws]


def _grads(out: torch.Tensor, leaves: list[torch.Tensor], probe: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * probe).sum(), leaves, retain_graph=True))


@pytest.mark.parametrize("path", ["padded", "looped"])
@pytest.mark.parametrize("n_exp,k", [(6, 2), (5, 1), (4, 4)])
def test_reordered_dispatch_equals_per_token_loop(n_exp, k, path, monkeypatch):
    monkeypatch.setattr(D, "PAD_LIMIT", float("inf") if path == "padded" else 0.0)
    gen = torch.Generator().manual_seed(n_exp * 10 + k)
    n, d, h = 37, 8, 12
    x = torch.randn(n, d, generator=gen, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(n, n_exp, generator=gen, dtype=torch.float64, requires_grad=True)
    ws = _experts(n_exp, d, h, gen)
    r = noisy_top_k(logits, k)
    fast, stats = dispatch_reordered(x, r.idx, r.gates, *ws)
    slow = dispatch_per_token(x, r.idx, r.gates, *ws)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    assert stats.routed == n * k and stats.dropped == stats.missed == 0
    assert sum(stats.counts) == n * k
    probe = torch.randn(n, d, generator=gen, dtype=torch.float64)
    for a, b in zip(_grads(fast, [x, logits, *ws], probe), _grads(slow, [x, logits, *ws], probe)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["padded", "looped"])
def test_capacity_drops_late_routes_and_counts_them(path, monkeypatch):
    monkeypatch.setattr(D, "PAD_LIMIT", float("inf") if path == "padded" else 0.0)
    gen = torch.Generator().manual_seed(3)
    n, d, h, n_exp = 20, 4, 6, 3
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    idx = torch.zeros(n, 1, dtype=torch.long)
    idx[15:, 0] = 1                                       # expert 0: 15 routes, expert 1: 5
    gates = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    ws = _experts(n_exp, d, h, gen)
    out, stats = dispatch_reordered(x, idx, gates, *ws, capacity=10)
    kept = gates.clone()
    kept[10:15] = 0                                      # expert 0 serves its first 10 tokens
    torch.testing.assert_close(out, dispatch_per_token(x, idx, kept, *ws))
    assert (stats.routed, stats.dropped, stats.counts) == (15, 5, (15, 5, 0))
    slot = torch.tensor([-1, 0, 1])                      # a pruned layer without expert 0
    out, stats = dispatch_reordered(x, idx, gates, *(w[1:] for w in ws), slot=slot)
    torch.testing.assert_close(out, dispatch_per_token(x, idx, gates * (idx != 0), *ws))
    assert (stats.routed, stats.missed, stats.counts) == (5, 15, (5, 0))


def test_moe_layer_matches_reference_and_router_learns():
    torch.manual_seed(0)
    moe = MoEFFN(16, 24, num_experts=6, top_k=2, tasks=TASKS).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    moe.eval()
    logits = moe.router.logits(x.reshape(-1, 16), "seg", 16, 6)
    r = noisy_top_k(logits, 2)
    ref = dispatch_per_token(x.reshape(-1, 16), r.idx, r.gates, moe.w1, moe.b1, moe.w2, moe.b2)
    torch.testing.assert_close(moe(x, "seg"), ref.view(2, 9, 16))
    moe.train()
    moe(x, "seg").pow(2).sum().backward()
    gate = moe.router.weight["seg"].grad
    assert gate is not None and gate.abs().sum() > 0          # through the gates
    assert moe.router.weight["depth"].grad is None            # the other task's gate is untouched
    moe.zero_grad()
    moe.reset_auxiliary()
    moe(x, "seg")
    (aux,) = moe.auxiliary_losses().values()
    aux.backward()                                            # through importance and smooth load
    assert moe.router.weight["seg"].grad.abs().sum() > 0


def test_balance_loss_is_zero_for_uniform_routing_and_known_when_collapsed():
    n_exp, k = 4, 1
    # every token prefers another expert in turn: importance and load exactly uniform
    base = torch.tensor([3.0, 1.0, 0.5, 0.0])
    logits = torch.stack([base.roll(i) for i in range(8)])
    r = noisy_top_k(logits, k)
    assert r.load.tolist() == [2.0] * n_exp
    assert float(balance_loss(r)) == pytest.approx(0.0, abs=1e-6)
    # every token on expert 0: cv²(load) = var/mean² of (N, 0, 0, 0) = E (unbiased variance)
    collapsed = noisy_top_k(torch.tensor([[5.0, 0.0, 0.0, 0.0]] * 8), k)
    assert float(cv_squared(collapsed.load)) == pytest.approx(n_exp)
    assert float(balance_loss(collapsed)) > float(balance_loss(r)) + 1.0
    assert float(cv_squared(torch.ones(7))) == 0.0 and float(cv_squared(torch.ones(1))) == 0.0


def test_gates_are_kept_probabilities_unless_renormalised():
    logits = torch.randn(10, 5)
    r = noisy_top_k(logits, 2)
    torch.testing.assert_close(r.gates, torch.softmax(logits, -1).topk(2).values)
    assert (r.gates.sum(-1) < 1).all()
    torch.testing.assert_close(noisy_top_k(logits, 2, renormalize=True).gates.sum(-1), torch.ones(10))
    torch.manual_seed(0)
    noisy = noisy_top_k(logits, 2, noise_std=5.0, training=True)
    assert not torch.equal(noisy.probs, r.probs)               # noise std 5 / E in training
    assert torch.equal(noisy_top_k(logits, 2, noise_std=0.0, training=True).probs, r.probs)


@pytest.mark.parametrize("settings", [
    MoESettings(router="multi_gate"),
    MoESettings(router="task_conditioned", task_embed="onehot"),
    MoESettings(router="task_conditioned", task_embed="dense", task_embed_dim=4),
])
def test_routers_route_each_task_differently(settings):
    torch.manual_seed(1)
    moe = MoEFFN(16, 16, num_experts=8, top_k=2, tasks=TASKS, settings=settings).eval()
    with torch.no_grad():  # bigger gates than the 0.02 init, so routing clearly depends on the task
        for p in moe.router.parameters():
            p.normal_()
    x = torch.randn(4, 10, 16)
    la, lb = (moe.router.logits(x.reshape(-1, 16), t, 16, 8) for t in TASKS)
    assert not torch.allclose(la, lb)
    assert not torch.equal(la.topk(2).indices, lb.topk(2).indices)
    assert not torch.allclose(moe(x, "seg"), moe(x, "depth"))
    with pytest.raises(UnknownTaskError, match="normal"):
        moe(x, "normal")


def test_auxiliary_losses_follow_the_latest_forward():
    torch.manual_seed(2)
    moe = MoEFFN(8, 8, num_experts=4, top_k=1, tasks=TASKS, settings=MoESettings(noise_std=0.0),
                 name="moe_balance.block1")
    x = torch.randn(3, 5, 8)
    assert moe.auxiliary_losses() == {}
    moe.train()
    seg = {}
    for t in TASKS:
        moe(x, t)
        seg[t] = float(moe.auxiliary_losses()["moe_balance.block1"].detach())
    assert seg["seg"] != seg["depth"]
    moe(x, "seg")
    moe(x, "depth")                                            # the latest forward replaces
    assert float(moe.auxiliary_losses()["moe_balance.block1"].detach()) == pytest.approx(seg["depth"])
    with accumulating([moe]):                                  # a forward_all: the tasks add up
        moe(x, "seg")
        moe(x, "depth")
    assert float(moe.auxiliary_losses()["moe_balance.block1"].detach()) == pytest.approx(sum(seg.values()))
    moe.reset_auxiliary()
    moe.eval()
    moe(x, "seg")
    assert moe.auxiliary_losses() == {}                        # no balance loss at inference
    quiet = MoEFFN(8, 8, 4, 1, TASKS, MoESettings(aux_weight=0.0)).train()
    quiet(x, "seg")
    assert quiet.auxiliary_losses() == {}


def test_bad_input_is_typed():
    with pytest.raises(ArchError, match="top-k 5"):
        MoEFFN(8, 8, num_experts=4, top_k=5, tasks=TASKS)
    with pytest.raises(ArchError, match="top-k 3"):
        noisy_top_k(torch.randn(2, 2), 3)
    moe = MoEFFN(8, 8, num_experts=4, top_k=2, tasks=TASKS)
    with pytest.raises(ArchError, match="top-k must be <= experts"):
        moe.configure(8, 8, experts=2, top_k=3)
    with pytest.raises(ConfigError, match="top_ks"):
        SpaceConfig("x", depths=(1,), embeds=(8,), heads=(1,), ffn_kinds=("moe",), num_experts=(2,),
                    top_ks=(4,))
    with pytest.raises(ConfigError, match="moe.router"):
        MoESettings(router="switch")
    with pytest.raises(ConfigError, match="moe.capacity_factor"):
        MoESettings(capacity_factor=0)
    with pytest.raises(ConfigError, match="ffn_layout"):
        SpaceConfig("x", depths=(2,), embeds=(8,), heads=(1,), ffn_kinds=("dense",),
                    ffn_layout=("dense", "moe"))
