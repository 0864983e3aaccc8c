"""Each weighting method on a toy problem where its defining behaviour is visible."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from automtl.errors import ConfigError, TrainingError
from automtl.train.weighting import (
    DWA,
    WEIGHTINGS,
    CAGrad,
    GradNorm,
    NashMTL,
    PCGrad,
    UncertaintyWeighting,
    build_weighting,
)

TASKS = ["a", "b"]


def _linear_losses(theta, g1, g2):
    return {"a": theta @ torch.tensor(g1), "b": theta @ torch.tensor(g2)}


def test_registry_and_errors():
    for name in ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad", "nash_mtl"):
        w = build_weighting(name, TASKS)
        assert w.name == name and name in WEIGHTINGS.module_dict
    assert build_weighting(dict(type="cagrad", c=0.7), TASKS).c == 0.7
    with pytest.raises(ConfigError, match="mgda_bogus"):
        build_weighting("mgda_bogus", TASKS)
    with pytest.raises(ConfigError, match="shared_parameters"):
        theta = nn.Parameter(torch.ones(2))
        build_weighting("pcgrad", TASKS).backward(_linear_losses(theta, [1.0, 0], [0, 1.0]))
    theta = nn.Parameter(torch.ones(2))
    with pytest.raises(TrainingError, match="'b'"):
        build_weighting("fixed", TASKS).backward({"a": theta.sum(), "b": theta.sum() * math.inf})


def test_fixed_is_weighted_sum():
    theta = nn.Parameter(torch.zeros(2))
    w = build_weighting(dict(type="fixed", weights={"a": 2.0}), TASKS)
    w.backward(_linear_losses(theta, [1.0, 0.0], [0.0, 3.0]))
    assert theta.grad.tolist() == [2.0, 3.0]


def test_pcgrad_removes_conflicting_component():
    theta = nn.Parameter(torch.zeros(2))
    head = nn.Parameter(torch.ones(1))  # task-specific: gets its plain gradient
    losses = _linear_losses(theta, [1.0, 0.0], [-1.0, 1.0])
    losses["b"] = losses["b"] + 3 * head.sum()
    PCGrad(TASKS).backward(losses, shared_parameters=[theta])
    # g_a' = g_a + 0.5 g_b = (0.5, 0.5); g_b' = g_b + g_a = (0, 1); both now non-conflicting
    assert torch.allclose(theta.grad, torch.tensor([0.5, 1.5]))
    assert head.grad.item() == 3.0
    # No conflict: plain sum, and gradients accumulate onto existing .grad.
    theta.grad = torch.ones(2)
    PCGrad(TASKS).backward(_linear_losses(theta, [1.0, 0.0], [1.0, 1.0]), shared_parameters=[theta])
    assert theta.grad.tolist() == [3.0, 2.0]


def test_cagrad_improves_the_worst_task():
    g = torch.tensor([[4.0, 0.0], [-1.0, 0.5]])
    mean = g.mean(0)
    assert (g @ mean).min() < 0  # the average direction hurts task b
    d = CAGrad(TASKS, c=0.5).direction(g)
    worst = lambda v: ((g @ v) / v.norm()).min().item()
    assert worst(d) > worst(mean) + 0.1
    assert torch.allclose(CAGrad(TASKS, c=0.0).direction(g), g.sum(0))
    theta = nn.Parameter(torch.zeros(2))
    CAGrad(TASKS, c=0.5).backward(_linear_losses(theta, [4.0, 0.0], [-1.0, 0.5]), shared_parameters=[theta])
    assert torch.allclose(theta.grad, d)


def _toy_regression(noise_b: float, steps: int, weighting, lr: float = 0.05, scale_b: float = 1.0):
    """Shared linear layer + two heads; task b has ``noise_b`` target noise and loss scale."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    ya = x @ torch.tensor([1.0, -1.0, 0.5, 0.0]) + 0.05 * torch.randn(256)
    yb = x @ torch.tensor([0.0, 1.0, 1.0, -1.0]) + noise_b * torch.randn(256)
    shared = nn.Linear(4, 8)
    heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})
    opt = torch.optim.Adam(list(shared.parameters()) + list(heads.parameters()) + list(weighting.parameters()),
                           lr=lr)
    infos = []
    for _ in range(steps):
        opt.zero_grad()
        h = shared(x)
        losses = {"a": ((heads["a"](h)[:, 0] - ya) ** 2).mean(),
                  "b": scale_b * ((heads["b"](h)[:, 0] - yb) ** 2).mean()}
        infos.append((weighting.backward(losses, shared_parameters=list(shared.parameters())),
                      {k: v.item() for k, v in losses.items()}))
        opt.step()
    return infos


def test_uncertainty_gives_the_noisier_task_less_weight():
    w = UncertaintyWeighting(TASKS)
    infos = _toy_regression(noise_b=1.0, steps=300, weighting=w)
    weights, losses = infos[-1]
    assert weights["b"] < 0.5 * weights["a"]
    # At the optimum exp(s_t) tracks the task's loss.
    assert math.exp(w.log_vars[1].item()) == pytest.approx(losses["b"], rel=0.3)


def test_dwa_follows_loss_ratios():
    w = DWA(TASKS, window=2, temperature=1.0)
    theta = nn.Parameter(torch.ones(1))
    seq = [(4.0, 1.0), (4.0, 1.0), (1.0, 1.0), (1.0, 1.0)]  # a falls 4x, b flat
    for la, lb in seq:
        assert w.backward({"a": theta.sum() * la, "b": theta.sum() * lb}) == {"a": 1.0, "b": 1.0}
    weights = w.current_weights()
    assert weights[1] > weights[0] and sum(weights) == pytest.approx(2.0)
    ea, eb = math.exp(0.25), math.exp(1.0)
    assert weights[1] == pytest.approx(2 * eb / (ea + eb))
    # The loss history survives a checkpoint.
    w2 = DWA(TASKS, window=2, temperature=1.0)
    w2.load_state_dict(w.state_dict())
    assert w2.current_weights() == pytest.approx(weights)


def test_gradnorm_equalises_gradient_norms():
    gn = GradNorm(TASKS, alpha=0.0)
    norms = []
    real = gn.backward

    def spy(losses, shared_parameters=None):
        out = real(losses, shared_parameters)
        norms.append(list(gn.last_grad_norms))
        return out

    gn.backward = spy
    infos = _toy_regression(noise_b=0.05, steps=150, weighting=gn, lr=0.02, scale_b=20.0)
    ratios = sorted(b / a for a, b in norms[-50:])
    assert norms[0][1] / norms[0][0] > 5  # task b's gradient starts 20x larger
    assert 0.5 < ratios[25] < 2.0  # median over the last 50 steps: the weighted norms are balanced
    w_a, w_b = infos[-1][0]["a"], infos[-1][0]["b"]
    assert w_a > w_b and w_a + w_b == pytest.approx(2.0, rel=1e-3)
    gn2 = GradNorm(TASKS)
    gn2.load_state_dict(gn.state_dict())
    assert torch.equal(gn2.weights, gn.weights) and bool(gn2.started)


def test_pcgrad_state_roundtrip_repeats_order():
    a, b = PCGrad(TASKS + ["c"], seed=3), PCGrad(TASKS + ["c"], seed=9)
    b.load_state_dict(a.state_dict())
    g = torch.randn(3, 5)
    assert torch.equal(a.project(g), b.project(g))


def test_nash_mtl_improves_every_task_and_ignores_loss_scale():
    g = torch.tensor([[4.0, 0.0, 1.0], [-1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    d = NashMTL(["a", "b", "c"]).direction(g)
    alpha = torch.tensor(_alpha(g), dtype=torch.float32)
    assert torch.allclose(g @ d, 1 / alpha, rtol=1e-6)  # the bargaining condition
    assert (g @ d > 0).all()  # every task improves, also b whose gradient conflicts with a
    scaled = g.clone()
    scaled[0] *= 100.0
    assert torch.allclose(NashMTL(["a", "b", "c"]).direction(scaled), d, rtol=1e-5, atol=1e-6)
    # A task without gradient gets no weight instead of an infinite one.
    g0 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(NashMTL(TASKS).direction(g0), torch.tensor([1.0, 0.0]))
    theta = nn.Parameter(torch.zeros(3))
    w = NashMTL(["a", "b", "c"])
    w.backward({t: theta @ g[i] for i, t in enumerate("abc")}, shared_parameters=[theta])
    assert torch.allclose(theta.grad, d, rtol=1e-5)


def _alpha(g):
    from automtl.train.weighting import _nash_alpha

    return _nash_alpha((g.double() @ g.double().T).numpy())
