"""Sparse CPU kernels of delta inference: ``W·Δx`` for a sparse delta activation ``Δx`` and
``ΔW·x`` for a sparse weight delta ``ΔW``, for linear layers and 2-d convolutions.

They return exactly what the dense ops return (up to float rounding) and cost in proportion to
the non-zeros; whether that is faster in wall time than the dense op depends on the density
(see the ``delta`` section of BENCHMARKS.md for the measured crossover).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def csr_from_sorted(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                    shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from COO entries already sorted by row (no sort, no invariant check)."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    if rows.numel():
        crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and used on purpose
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


def csr_of_rows(a: torch.Tensor) -> torch.Tensor:
    """The CSR form of a dense 2-d tensor (its zeros dropped)."""
    flat_a = a.contiguous().view(-1)
    flat = flat_a.nonzero().squeeze(1)
    rows = torch.div(flat, a.shape[1], rounding_mode="floor")
    return csr_from_sorted(rows, flat - rows * a.shape[1], flat_a[flat], (a.shape[0], a.shape[1]))


def linear_activation_term(dx: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``dx @ W.T`` for a sparse ``dx`` (…, in) and ``weight_t`` = W.T (in, out), contiguous.

    (In-place ``addmm_`` into a zero output: far cheaper than ``torch.sparse.mm`` on CPU.)"""
    flat = dx.reshape(-1, dx.shape[-1])
    out = dx.new_zeros(flat.shape[0], weight_t.shape[1]).addmm_(csr_of_rows(flat), weight_t)
    return out.view(*dx.shape[:-1], weight_t.shape[1])


def linear_weight_term(x: torch.Tensor, delta_csr: torch.Tensor) -> torch.Tensor:
    """``x @ ΔW.T`` for ``ΔW`` (out, in) given as CSR."""
    flat = x.reshape(-1, x.shape[-1])
    out = x.new_zeros(delta_csr.shape[0], flat.shape[0]).addmm_(delta_csr, flat.t().contiguous()).t()
    return out.reshape(*x.shape[:-1], delta_csr.shape[0])


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_activation_term(dx: torch.Tensor, taps: torch.Tensor, *, stride: tuple[int, int],
                         padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``conv2d(dx, W)`` (no bias, groups 1) for a sparse ``dx`` (N, C, H, W).

    ``taps`` is W laid out as (kh, kw, C, out), contiguous. Each non-zero input entry is
    scattered to the outputs it reaches, one in-place CSR product per kernel tap; entries come
    out of ``nonzero`` in (n, i, j, c) order, so every tap's rows are already sorted (no sort,
    no filtering: an entry that reaches no output through a tap is kept with value 0). Cost:
    in proportion to the non-zeros, plus one pass over the output per tap.
    """
    n, c, h, w = dx.shape
    kh, kw, _, out_c = taps.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    rows_total = n * ho * wo
    flat_cl = dx.permute(0, 2, 3, 1).contiguous().view(-1)  # (n, i, j, c) order
    flat = flat_cl.nonzero().squeeze(1)
    if flat.numel() == 0:
        return dx.new_zeros(n, out_c, ho, wo)
    vals = flat_cl[flat]
    bc = flat % c
    pos = torch.div(flat, c, rounding_mode="floor")
    bj = pos % w
    pos = torch.div(pos, w, rounding_mode="floor")
    bi = pos % h
    bn = torch.div(pos, h, rounding_mode="floor")
    y = dx.new_zeros(rows_total, out_c)
    for a in range(kh):
        num_i = bi + ph - a * dh
        oi = torch.div(num_i, sh, rounding_mode="floor")
        ok_i = (num_i - oi * sh == 0) & (oi >= 0) & (oi < ho)
        row_i = bn * ho + oi
        for b in range(kw):
            num_j = bj + pw - b * dw
            oj = torch.div(num_j, sw, rounding_mode="floor")
            ok = ok_i & (num_j - oj * sw == 0) & (oj >= 0) & (oj < wo)
            # an entry that reaches no output stays, with value 0, on the row of the last one
            # that does (a running maximum keeps the rows sorted)
            rows = torch.where(ok, row_i * wo + oj, -1).cummax(0).values.clamp_min(0)
            y.addmm_(csr_from_sorted(rows, bc, vals * ok, (rows_total, c)), taps[a, b])
    return y.view(n, ho, wo, out_c).permute(0, 3, 1, 2)


def conv_weight_term(x: torch.Tensor, delta_csr: torch.Tensor, *, kernel: tuple[int, int],
                     stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                     taps: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``conv2d(x, ΔW)`` (no bias, groups 1) for ``ΔW`` given as CSR (out, C·kh·kw).

    Stride 1: one CSR product per kernel tap with a shifted column window of the padded input
    laid out as (C, N·Hp·Wp), no im2col copy (``taps``: ΔW as one CSR (out, C) per tap,
    :func:`tap_csr`); 1×1 without padding: one product on the (subsampled) input; otherwise
    through ``unfold``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(w, kw, stride[1], padding[1], dilation[1])
    out_c = delta_csr.shape[0]
    if kernel == (1, 1) and padding == (0, 0):
        cols = x[:, :, ::stride[0], ::stride[1]].permute(1, 0, 2, 3).reshape(c, n * ho * wo)
        return x.new_zeros(out_c, cols.shape[1]).addmm_(delta_csr, cols).view(-1, n, ho, wo).permute(1, 0, 2, 3)
    if stride == (1, 1):
        taps = taps if taps is not None else tap_csr(delta_csr, kernel, c)
        return _conv_weight_term_shifted(x, taps, delta_csr.shape[0], kernel, padding, dilation, (ho, wo))
    unf = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # N, C·k², L
    cols = unf.permute(1, 0, 2).reshape(c * kh * kw, n * ho * wo)
    out = x.new_zeros(out_c, cols.shape[1]).addmm_(delta_csr, cols)  # out, N·L
    return out.view(-1, n, ho, wo).permute(1, 0, 2, 3)


def tap_csr(delta_csr: torch.Tensor, kernel: tuple[int, int], c: int) -> list[torch.Tensor]:
    """ΔW (out, C·kh·kw) as one CSR (out, C) per kernel tap."""
    dense = delta_csr.to_dense().view(delta_csr.shape[0], c, kernel[0], kernel[1])
    return [csr_of_rows(dense[:, :, a, b]) for a in range(kernel[0]) for b in range(kernel[1])]


def _conv_weight_term_shifted(x: torch.Tensor, taps: list[torch.Tensor], out_c: int, kernel: tuple[int, int],
                              padding: tuple[int, int], dilation: tuple[int, int],
                              out_hw: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = x.shape
    kh, kw = kernel
    ph, pw = padding
    hp, wp = h + 2 * ph, w + 2 * pw
    flat = F.pad(x, (pw, pw, ph, ph)).transpose(0, 1).contiguous().view(c, n * hp * wp)
    span = n * hp * wp - ((kh - 1) * dilation[0] * wp + (kw - 1) * dilation[1])
    out = x.new_zeros(out_c, n * hp * wp)
    for k, tap in enumerate(taps):
        if tap.values().numel() == 0:
            continue
        a, b = divmod(k, kw)
        off = a * dilation[0] * wp + b * dilation[1]
        out[:, :span].addmm_(tap, flat[:, off:off + span])
    ho, wo = out_hw
    return out.view(-1, n, hp, wp)[:, :, :ho, :wo].permute(1, 0, 2, 3)
