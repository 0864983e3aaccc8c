"""Functional pieces of a ViT-MVT block, shared by the elastic supernet and the exported model.

Both call exactly these functions with tensors of the same shapes, so an exported subnet
reproduces the supernet's outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._config import HEAD_DIM

LN_EPS = 1e-6

_INDEX_CACHE: dict[tuple[int, int, int, int, str], Tensor] = {}


def tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """(B, N, C) tokens → (B, C, H, W) map."""
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, hw[0], hw[1])


def map_to_tokens(m: Tensor) -> Tensor:
    """(B, C, H, W) map → (B, N, C) tokens."""
    return m.flatten(2).transpose(1, 2)


def dwconv(x: Tensor, hw: tuple[int, int], weight: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise 3×3 convolution applied to tokens laid out on their 2-D grid."""
    m = F.conv2d(tokens_to_map(x, hw), weight, bias, padding=1, groups=weight.shape[0])
    return map_to_tokens(m)


def add_pos_embed(m: Tensor, pos: Tensor) -> Tensor:
    """Add the absolute position embedding, bicubic-resized when the grid differs."""
    if pos.shape[-2:] != m.shape[-2:]:
        pos = F.interpolate(pos, size=m.shape[-2:], mode="bicubic", align_corners=False)
    return m + pos


def patch_embed(m: Tensor, weight: Tensor, bias: Tensor | None, pos: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Non-overlapping ``p×p`` patch convolution plus position embedding → tokens and grid.

    On CPU this is one GEMM over the unfolded patches (a copy of the stem map in
    (B, h, w, p, p, C) order) instead of a strided convolution, whose oneDNN backward is
    several times slower. On CUDA, or when the map is not a multiple of ``p``, it is the
    convolution.
    """
    e, c, p, _ = weight.shape
    b, _, hh, ww = m.shape
    if m.is_cuda or hh % p or ww % p:
        m = add_pos_embed(F.conv2d(m, weight, bias, stride=p), pos)
        return map_to_tokens(m), (m.shape[-2], m.shape[-1])
    h, w = hh // p, ww // p
    u = m.permute(0, 2, 3, 1).reshape(b, h, p, w, p, c).transpose(2, 3).reshape(b, h * w, p * p * c)
    t = F.linear(u, weight.permute(0, 2, 3, 1).reshape(e, p * p * c), bias)
    if pos.shape[-2:] != (h, w):
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
    return t + map_to_tokens(pos), (h, w)


def _rel_index(h: int, w: int, gh: int, gw: int, device: torch.device) -> Tensor:
    key = (h, w, gh, gw, str(device))
    idx = _INDEX_CACHE.get(key)
    if idx is None:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()], 1)
        rel = coords[:, None, :] - coords[None, :, :]
        idx = ((rel[..., 0] + gh - 1) * (2 * gw - 1) + rel[..., 1] + gw - 1).flatten().to(device)
        _INDEX_CACHE[key] = idx
    return idx


def relative_bias(table: Tensor, grid: int, hw: tuple[int, int]) -> Tensor:
    """(heads, N, N) attention bias from a ``((2g-1)², heads)`` table of relative offsets.

    Grids up to the table's ``g`` index it directly; larger grids resize it bicubically.
    """
    h, w = hw
    heads = table.shape[1]
    gh = gw = grid
    if h > grid or w > grid:
        t = table.t().reshape(1, heads, 2 * grid - 1, 2 * grid - 1)
        t = F.interpolate(t, size=(2 * h - 1, 2 * w - 1), mode="bicubic", align_corners=False)
        table = t.reshape(heads, -1).t()
        gh, gw = h, w
    n = h * w
    # gather along the offsets of the (heads, offsets) transpose: a contiguous (heads, N, N)
    # result, and an index_add backward (much cheaper than indexing's accumulating index_put)
    return table.t().index_select(1, _rel_index(h, w, gh, gw, table.device)).view(heads, n, n)


def attention(x: Tensor, qkv_w: Tensor, qkv_b: Tensor, proj_w: Tensor, proj_b: Tensor,
              bias: Tensor) -> Tensor:
    """MHSA with head dim 64 and an additive relative-position bias, then the output projection.

    The qkv rows are laid out (heads, 3, 64): the first ``h`` heads are the leading
    ``192·h`` rows, so fewer heads are a plain leading slice of the weight.
    """
    b, n, _ = x.shape
    heads = bias.shape[0]
    qkv = F.linear(x, qkv_w, qkv_b).view(b, n, heads, 3, HEAD_DIM).permute(3, 0, 2, 1, 4)
    q, k, v = qkv.unbind(0)
    mask = bias.unsqueeze(0).to(q.dtype)
    if mask.is_cuda and n % 8:
        # fused attention kernels need an aligned mask row stride: pad, then view the N columns
        padded = mask.new_zeros(1, heads, n, n + 8 - n % 8)
        padded[..., :n] = mask
        mask = padded[..., :n]
    if mask.requires_grad and not mask.is_cuda:
        o = _explicit_attention(q, k, v, mask)
    else:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(o.transpose(1, 2).reshape(b, n, heads * HEAD_DIM), proj_w, proj_b)


def _explicit_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """``softmax(q·kᵀ/√d + mask)·v``, for a mask that needs a gradient on CPU: there SDPA
    falls back to its math path, the same matmuls plus masked-row checks; without a mask
    gradient its fused kernel is faster."""
    a = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1)) + mask
    return torch.matmul(torch.softmax(a, -1), v)


def mhse(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """Squeeze-and-excitation over the attention output: token mean → E/8 → E gates."""
    s = F.relu(F.linear(x.mean(1), w1, b1))
    return x * torch.sigmoid(F.linear(s, w2, b2)).unsqueeze(1)


def locality_ffn(x: Tensor, hw: tuple[int, int], w1: Tensor, b1: Tensor, dw_w: Tensor,
                 dw_b: Tensor | None, w2: Tensor, b2: Tensor) -> Tensor:
    """``fc2(GELU(DWres(fc1(x))))`` with ``DWres(y) = y + DWConv3×3(y)``."""
    y = F.linear(x, w1, b1)
    y = y + dwconv(y, hw, dw_w, dw_b)
    return F.linear(F.gelu(y), w2, b2)


def dense_ffn(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """The plain ViT MLP ``fc2(GELU(fc1(x)))`` (the ``dense`` FFN kind)."""
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""
    if p <= 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


def upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of dense logits to the input size."""
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)
