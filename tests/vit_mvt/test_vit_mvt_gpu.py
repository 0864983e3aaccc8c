"""CUDA checks: the on-device straight-through select, export equality and a bf16 step."""
from __future__ import annotations

import random

import pytest
import torch

from search_spaces.vit_mvt import build_supernet, export_subnet

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_select_gradients_match_soft_formula(micro):
    torch.manual_seed(0)
    net = build_supernet(micro).cuda().eval()
    net.set_arch({k: v for k, v in micro.smallest().items() if not k.startswith("share.")})
    lin = net.blocks[0].fc2
    with torch.no_grad():
        lin.task_weight["cls"].normal_()
        lin.score["cls"].fill_(0.3)
    x = torch.randn(2, 3, 64, 64, device="cuda")

    def soft(task):
        s = lin.score[task]
        g = (s > 0.5).to(s.dtype) + s - s.detach()
        ws, bs = lin._slice(lin.weight, lin.bias)
        wt, bt = lin._slice(lin.task_weight[task], lin.task_bias[task])
        return g * ws + (1 - g) * wt, g * bs + (1 - g) * bt

    grads = []
    for use_soft in (False, True):
        net.zero_grad(set_to_none=False)
        if use_soft:
            lin.params = soft  # type: ignore[method-assign]
        try:
            net(x, "cls").pow(2).mean().backward()
        finally:
            lin.__dict__.pop("params", None)
        grads.append([lin.score["cls"].grad.clone(), lin.task_weight["cls"].grad.clone(),
                      lin.weight.grad.clone()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_cuda_export_matches(micro):
    torch.manual_seed(0)
    net = build_supernet(micro).cuda().eval()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    rng = random.Random(0)
    for _ in range(3):
        cand = micro.sample(rng)
        net.set_arch(cand)
        ref = net.forward_all(x)
        got = export_subnet(net, cand).eval().forward_all(x)
        for t in ref:
            torch.testing.assert_close(got[t], ref[t], rtol=1e-4, atol=1e-5)


def test_cuda_bf16_training_step(micro):
    torch.manual_seed(0)
    net = build_supernet(micro, drop_path_rate=0.1).cuda().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(4, 3, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = net.forward_all(x)
        loss = out["cls"].float().logsumexp(1).mean() + out["seg"].float().pow(2).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert net.blocks[0].qkv.score["cls"].grad is not None
