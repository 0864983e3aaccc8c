"""Metrics, criteria and weighting on a CUDA device (skipped without one)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from automtl.data.synthetic import TASKS, make_loaders
from automtl.metrics import default_metrics
from automtl.train.losses import default_criteria
from automtl.train.weighting import build_weighting

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CHANNELS = {"segment_semantic": 5, "depth_zbuffer": 1, "normal": 3, "edge_texture": 1, "saliency": 1}


def test_metrics_and_losses_match_cpu():
    _, val = make_loaders(TASKS, size=24, n_train=4, n_val=4, batch_size=4, seed=0)
    torch.manual_seed(0)
    for task in TASKS:
        _, target = next(iter(val[task]))
        pred = torch.randn(4, CHANNELS[task], 12, 12)
        cpu, gpu = default_metrics([task])[task], default_metrics([task])[task]
        cpu.update(pred, target)
        gpu.update(pred.cuda(), target.cuda())
        assert gpu.compute() == pytest.approx(cpu.compute(), rel=1e-5, abs=1e-3), task
        crit = default_criteria([task])[task]
        assert crit(pred.cuda(), target.cuda()).item() == pytest.approx(crit(pred, target).item(), rel=1e-4)


@pytest.mark.parametrize("name", ["uncertainty", "gradnorm", "pcgrad", "cagrad", "nash_mtl"])
def test_weighting_on_cuda(name):
    torch.manual_seed(0)
    trunk = nn.Linear(4, 8).cuda()
    heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)}).cuda()
    w = build_weighting(name, ["a", "b"])
    x = torch.randn(16, 4, device="cuda")
    h = trunk(x)
    losses = {t: heads[t](h).pow(2).mean() for t in ("a", "b")}
    w.backward(losses, shared_parameters=list(trunk.parameters()))
    assert all(p.grad is not None and p.grad.is_cuda for p in trunk.parameters())
    assert all(torch.isfinite(p.grad).all() for p in heads.parameters())
