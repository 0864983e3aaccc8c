"""Delta layers: hard-concrete gates, W_base + ΔW numerics, fixed supports at a target density,
thresholded delta activations, sparse kernels and sparse state dicts."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automtl.delta import HardConcreteGate, WeightDelta, delta_layer, fix_support
from automtl.errors import ConfigError, ModelError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _random_delta(layer, density: float = 1.0) -> None:
    with torch.no_grad():
        layer.delta.delta.normal_(0, 0.1)
        if layer.delta.bias_delta is not None:
            layer.delta.bias_delta.normal_(0, 0.1)
    if density < 1.0:
        fix_support([layer.delta], density)


CONVS = [dict(k=3, s=1, p=1, d=1, bias=False), dict(k=3, s=2, p=1, d=1, bias=True),
         dict(k=1, s=2, p=0, d=1, bias=False), dict(k=3, s=1, p=2, d=2, bias=True)]


@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: "k{k}s{s}p{p}d{d}".format(**c))
def test_delta_conv_equals_the_dense_merged_layer(cfg):
    base = nn.Conv2d(6, 10, cfg["k"], cfg["s"], cfg["p"], cfg["d"], bias=cfg["bias"])
    layer = delta_layer(base)
    _random_delta(layer, density=0.3)
    layer.eval()
    w = base.weight + layer.delta.effective()
    b = base.bias + layer.delta.bias_delta if cfg["bias"] else None
    x, xb = torch.randn(2, 6, 11, 11), torch.randn(2, 6, 11, 11)
    want = F.conv2d(x, w, b, cfg["s"], cfg["p"], cfg["d"])
    with torch.no_grad():
        for sparse in (False, True):
            layer.sparse = sparse
            assert torch.allclose(layer(x), want, atol=1e-5)                      # merged
            assert torch.allclose(layer(x, xb, base(xb)), want, atol=1e-5)        # on top of the base
            same = F.conv2d(xb, w, b, cfg["s"], cfg["p"], cfg["d"])
            assert torch.allclose(layer(xb, xb, base(xb)), same, atol=1e-5)      # only ΔW·x_b


def test_delta_linear_equals_the_dense_merged_layer():
    base = nn.Linear(12, 20)
    layer = delta_layer(base)
    _random_delta(layer, density=0.25)
    layer.eval()
    x, xb = torch.randn(3, 7, 12), torch.randn(3, 7, 12)
    want = F.linear(x, base.weight + layer.delta.effective(), base.bias + layer.delta.bias_delta)
    with torch.no_grad():
        for sparse in (False, True):
            layer.sparse = sparse
            assert torch.allclose(layer(x, xb, base(xb)), want, atol=1e-5)
    assert torch.allclose(layer.weight, base.weight + layer.delta.effective())


def test_only_linear_and_zero_padded_convs_take_deltas():
    with pytest.raises(ModelError, match="nn.Linear or nn.Conv2d"):
        delta_layer(nn.BatchNorm2d(4))
    with pytest.raises(ModelError, match="zero padding"):
        delta_layer(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))


def test_hard_concrete_gate_expectation_and_clipping():
    gate = HardConcreteGate((1000,), init_log_alpha=0.0)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.linspace(-6, 6, 1000))
        gate.log_alpha_tensor.fill_(4.0)
    want = torch.sigmoid(gate.log_alpha).mean() * torch.sigmoid(torch.tensor(4.0))  # log(-l/r) = 0
    assert torch.allclose(gate.expected_density(), want)
    gate.train()
    z = gate().detach()
    assert float(z.min()) == 0.0 and float(z.max()) <= 1.0 and bool(((z > 0) & (z < 1)).any())
    gate.eval()
    det = gate()
    expect = ((torch.sigmoid(gate.log_alpha) * 3 - 1.5).clamp(0, 1)
              * (torch.sigmoid(torch.tensor(4.0)) * 3 - 1.5).clamp(0, 1))
    assert torch.allclose(det, expect)
    with pytest.raises(ConfigError, match="stretch"):
        HardConcreteGate((3,), stretch=(0.1, 1.5))


@pytest.mark.parametrize("density", [0.1, 0.37, 1.0])
def test_fixed_support_matches_the_target_density(density):
    layers = [delta_layer(nn.Conv2d(8, 16, 3)), delta_layer(nn.Linear(30, 7)), delta_layer(nn.Conv2d(4, 4, 1))]
    for layer in layers:
        _random_delta(layer)
    deltas = [layer.delta for layer in layers]
    total = sum(d.numel for d in deltas)
    before = torch.cat([d.effective(deterministic=True).detach().abs().flatten() for d in deltas])
    reached = fix_support(deltas, density)
    kept = sum(d.nonzero() - (d.bias_delta.numel() if d.bias_delta is not None else 0) for d in deltas)
    assert kept == round(density * total) and reached == pytest.approx(kept / total)
    assert all(d.mode == "support" for d in deltas)
    # the kept entries are the largest |ΔW| of all layers together
    mask = torch.cat([(d.effective() != 0).flatten() for d in deltas])
    if not bool(mask.all()):
        assert float(before[mask].min()) >= float(before[~mask].max())


def test_support_keeps_the_largest_entries_and_their_values():
    layer = delta_layer(nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        layer.delta.delta.copy_(torch.arange(100, dtype=torch.float32).view(10, 10) - 50)
    old = layer.delta.effective(deterministic=True).detach().clone()
    fix_support([layer.delta], 0.2)
    new = layer.delta.effective()
    kept = new != 0
    assert int(kept.sum()) == 20
    assert torch.equal(new[kept], old[kept])
    assert float(old[kept].abs().min()) >= float(old[~kept].abs().max())


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, True, "half"])
def test_density_outside_0_1_is_refused(bad):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        fix_support([WeightDelta((3, 3))], bad)


@pytest.mark.parametrize("bad", [-0.01, -1, float("nan"), float("inf"), "x"])
def test_threshold_below_zero_is_refused(bad):
    with pytest.raises(ConfigError, match=">= 0"):
        WeightDelta((3, 3), threshold=bad)
    with pytest.raises(ConfigError, match=">= 0"):
        WeightDelta((3, 3)).set_threshold(bad)


def test_thresholded_delta_activations_are_zero_and_the_output_moves_within_the_bound():
    base = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    layer = delta_layer(base)
    _random_delta(layer, density=0.1)
    layer.eval()
    xb = torch.randn(2, 8, 12, 12)
    x = xb + 0.2 * torch.randn_like(xb)
    thr = 0.15
    dx = x - xb
    with torch.no_grad():
        full = layer(x, xb, base(xb))
        layer.delta.set_threshold(thr)
        for sparse in (False, True):
            layer.sparse = sparse
            out = layer(x, xb, base(xb))
            nnz, numel = layer.delta.last_activation
            assert nnz == int((dx.abs() >= thr).sum()) and numel == dx.numel()
            kept = torch.where(dx.abs() >= thr, dx, torch.zeros_like(dx))
            assert torch.allclose(out, F.conv2d(xb + kept, layer.weight, None, 1, 1), atol=1e-5)
            # each output moves by at most thr · Σ|W_task| over its receptive field
            bound = thr * layer.weight.abs().sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
            assert bool(((out - full).abs() <= bound + 1e-5).all())
    assert 0 < nnz < numel


def test_state_dict_stores_the_delta_sparse_and_reloads_exactly(tmp_path):
    base = nn.Conv2d(16, 32, 3, bias=True)
    layer = delta_layer(base)
    _random_delta(layer, density=0.05)
    layer.delta.set_threshold(0.2)
    path = tmp_path / "delta.pt"
    torch.save(layer.state_dict(), path)
    saved = torch.load(path)
    assert set(saved) == {"delta.index", "delta.value", "delta.bias_delta", "delta.threshold"}
    assert saved["delta.value"].numel() == round(0.05 * base.weight.numel())
    fresh = delta_layer(base)  # a new, dense (L0) delta adopts the sparse layout on load
    fresh.load_state_dict(saved)
    assert fresh.delta.mode == "support"
    assert torch.equal(fresh.delta.effective(), layer.delta.effective())
    assert torch.equal(fresh.delta.bias_delta, layer.delta.bias_delta)
    assert float(fresh.delta.threshold) == pytest.approx(0.2)
    assert fresh.delta.nonzero() == saved["delta.value"].numel() + 32


def test_penalties_are_reported_once_per_training_forward():
    base = nn.Linear(5, 5)
    layer = delta_layer(base)
    layer.delta.l0_lambda = 2.0
    layer.delta.act_l1 = 0.5
    x, xb = torch.randn(4, 5), torch.randn(4, 5)
    layer.train()
    layer(x, xb, base(xb))
    losses = layer.delta.auxiliary_losses()
    assert set(losses) == {"delta_l0", "delta_act_l1"}
    assert torch.allclose(losses["delta_act_l1"], 0.5 * (x - xb).abs().mean())
    expected = 2.0 * layer.delta.gate.expected_density()
    assert torch.allclose(losses["delta_l0"], expected)
    assert layer.delta.auxiliary_losses() == {}
    layer.eval()
    with torch.no_grad():
        layer(x, xb, base(xb))
    assert layer.delta.auxiliary_losses() == {}
    layer.delta.l0_target = 1.0  # the L0 penalty acts only above the target density
    layer.train()
    layer(x)
    assert float(layer.delta.auxiliary_losses()["delta_l0"].detach()) == 0.0


def test_l1_mode_and_base_gradient():
    base = nn.Linear(6, 3)
    layer = delta_layer(base, mode="l1")
    layer.delta.l1_lambda = 1.0
    _random_delta(layer)
    layer.train()
    layer(torch.randn(2, 6)).sum().backward()
    assert base.weight.grad is None and layer.delta.delta.grad is not None  # base weight detached
    assert math.isclose(float(layer.delta.auxiliary_losses()["delta_l1"].detach()),
                        float(layer.delta.delta.detach().abs().mean()), rel_tol=1e-6)
    layer.delta.base_grad = True
    layer(torch.randn(2, 6)).sum().backward()
    assert base.weight.grad is not None


def test_a_delta_with_pending_penalties_deep_copies_and_pickles(tmp_path):
    import copy
    import pickle

    layer = delta_layer(nn.Linear(4, 4))
    layer.delta.l0_lambda = 1.0
    layer.train()
    layer(torch.randn(2, 4))  # a penalty with its autograd graph is pending
    clone = copy.deepcopy(layer)
    assert clone.delta.auxiliary_losses() == {} and torch.equal(clone.weight, layer.weight)
    again = pickle.loads(pickle.dumps(layer.delta))
    assert again.auxiliary_losses() == {} and set(layer.delta.auxiliary_losses()) == {"delta_l0"}
