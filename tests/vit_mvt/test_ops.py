"""The CPU fast paths of the block functions equal their reference formulations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.vit_mvt import _ops as O
from search_spaces.vit_mvt._plain import Stem


def _grads(out: torch.Tensor, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return torch.autograd.grad(out, tensors, g)


@pytest.mark.parametrize("size, grid", [(32, 4), (48, 4), (44, 4)])
def test_patch_embed_equals_strided_conv(size, grid):
    """GEMM over unfolded patches == conv + position embedding (grid 4, resized 6, fallback)."""
    torch.manual_seed(0)
    m = torch.randn(2, 16, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = (torch.randn(24, 16, 8, 8) * 0.03).requires_grad_()
    b = torch.randn(24, requires_grad=True)
    pos = torch.randn(1, 24, grid, grid, requires_grad=True)
    t, hw = O.patch_embed(m, w, b, pos)
    ref = O.add_pos_embed(F.conv2d(m, w, b, stride=8), pos)
    assert hw == ref.shape[-2:]
    torch.testing.assert_close(t, O.map_to_tokens(ref), rtol=1e-5, atol=1e-5)
    for a, r in zip(_grads(t, [m, w, b, pos]), _grads(O.map_to_tokens(ref), [m, w, b, pos])):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw", [(4, 4), (3, 5), (6, 6)])
def test_relative_bias_equals_indexing(hw):
    """index_select on the transposed table == the (N·N, heads) gather it replaces."""
    torch.manual_seed(0)
    grid, heads = 4, 3
    table = torch.randn((2 * grid - 1) ** 2, heads, requires_grad=True)
    got = O.relative_bias(table, grid, hw)
    n = hw[0] * hw[1]
    t, gh, gw = table, grid, grid
    if hw[0] > grid or hw[1] > grid:
        t = F.interpolate(table.t().reshape(1, heads, 2 * grid - 1, 2 * grid - 1),
                          size=(2 * hw[0] - 1, 2 * hw[1] - 1), mode="bicubic",
                          align_corners=False).reshape(heads, -1).t()
        gh, gw = hw
    ref = t[O._rel_index(hw[0], hw[1], gh, gw, t.device)].view(n, n, heads).permute(2, 0, 1)
    assert got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(_grads(got, [table])[0], _grads(ref, [table])[0])


def test_explicit_attention_equals_sdpa():
    """With a trainable bias (explicit path on CPU) == the SDPA path, values and gradients."""
    torch.manual_seed(0)
    x = torch.randn(2, 12, 40, requires_grad=True)
    qkv_w, qkv_b = torch.randn(3 * 64 * 2, 40) * 0.05, torch.randn(3 * 64 * 2)
    proj_w, proj_b = torch.randn(40, 128) * 0.05, torch.randn(40)
    params = [t.requires_grad_() for t in (qkv_w, qkv_b, proj_w, proj_b)]
    bias = torch.randn(2, 12, 12, requires_grad=True)
    fast = O.attention(x, qkv_w, qkv_b, proj_w, proj_b, bias)
    ref = O.attention(x, qkv_w, qkv_b, proj_w, proj_b, bias.detach())  # SDPA: no mask grad
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    for a, r in zip(_grads(fast, [x, *params]), _grads(ref, [x, *params])):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
    mask_grad = _grads(O.attention(x, qkv_w, qkv_b, proj_w, proj_b, bias), [bias])[0]
    o = F.scaled_dot_product_attention(  # the math path's mask gradient
        *F.linear(x, qkv_w, qkv_b).view(2, 12, 2, 3, 64).permute(3, 0, 2, 1, 4).unbind(0),
        attn_mask=bias.unsqueeze(0))
    out = F.linear(o.transpose(1, 2).reshape(2, 12, 128), proj_w, proj_b)
    torch.testing.assert_close(mask_grad, _grads(out, [bias])[0], rtol=1e-4, atol=1e-5)


def test_stem_channels_last_equals_contiguous():
    """The stem runs channels-last on every device; the function is unchanged."""
    torch.manual_seed(0)
    stem = Stem().train()
    x = torch.randn(2, 3, 32, 32)
    got = stem(x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, nn.Sequential.forward(stem, x), rtol=1e-5, atol=1e-5)
