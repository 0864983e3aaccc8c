"""Running the experts of an MoE layer on the tokens routed to them.

:func:`dispatch_reordered` is M3ViT's accelerator idea in software: sort the (token, expert)
routes by expert, run each expert once on its contiguous queue (all queues padded to the
longest as two batched GEMMs, or one GEMM pair per expert when the queues are very uneven; no
loop over tokens), and bring the outputs back weighted by the gates. An optional capacity
caps each queue (the routes beyond it are dropped and counted). :func:`dispatch_per_token` is
the plain per-token loop it must equal (the tests' and the benchmark's reference).

Experts are stacked: ``w1`` (E, h, d), ``b1`` (E, h), ``w2`` (E, d, h), ``b2`` (E, d); expert
``e`` computes ``Linear(h→d)(GELU(Linear(d→h)(x)))``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class DispatchStats:
    """What one dispatch did: routes served, dropped by the capacity, and missed (routed to
    an expert a pruned layer no longer holds); ``counts`` are routes per stored expert."""

    routed: int
    dropped: int
    missed: int
    counts: tuple[int, ...]


def expert_forward(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """One expert on a batch of tokens: ``Linear(h→d)(GELU(Linear(d→h)(x)))``."""
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


#: the padded batched GEMMs run while their padding costs at most this factor more rows than
#: the routes themselves; a more skewed routing (e.g. an untrained router sending most tokens to
#: one expert) runs one GEMM pair per expert on its exact queue instead
PAD_LIMIT = 1.5


def dispatch_reordered(x: Tensor, idx: Tensor, gates: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
                       b2: Tensor, *, capacity: int | None = None,
                       slot: Tensor | None = None) -> tuple[Tensor, DispatchStats]:
    """``Σ_j gates[n, j] · expert_{idx[n, j]}(x[n])`` for every token of ``x`` (N, d).

    The routes are sorted by expert; each expert's queue is one contiguous block. While the
    queues are even, they are padded to the longest and run as two batched GEMMs over all
    experts at once; otherwise each expert runs one GEMM pair on its own slice. The outputs
    return to route order and are summed per token weighted by the gates.

    ``capacity``: at most that many routes per expert, in token order (the rest contribute
    nothing and are counted as dropped). ``slot`` (E_router,): the stored expert of
    each router expert, −1 where a pruned layer dropped it (those routes are counted as missed).
    """
    n, k = idx.shape
    n_stored = w1.shape[0]
    flat = idx.reshape(-1)
    if slot is not None:
        flat = slot[flat]
    order = torch.argsort(flat, stable=True)
    ranked = flat[order]
    valid = ranked >= 0
    counts = torch.bincount(ranked[valid] if slot is not None else ranked, minlength=n_stored)
    missed = n * k - int(counts.sum()) if slot is not None else 0
    sizes = counts.tolist()
    cap = max(sizes) if capacity is None else min(max(sizes), capacity)
    dropped = sum(c - cap for c in sizes if c > cap)
    stats = DispatchStats(routed=n * k - dropped - missed, dropped=dropped, missed=missed,
                          counts=tuple(sizes))
    if cap == 0:
        return x.new_zeros(n, w2.shape[1]), stats
    # decided on the router's expert count, so a pruned layer takes the unpruned layer's path
    n_router = n_stored if slot is None else slot.numel()
    if n_router * cap <= PAD_LIMIT * n * k:
        per_route = _padded(x, order, ranked, counts, cap, missed, k, w1, b1, w2, b2)
        if dropped or missed:  # their rows hold another route's output: weigh them by zero
            served = torch.empty_like(valid)
            served[order] = valid & (_positions(ranked, counts, missed) < cap)
            gates = gates * served.view(n, k).to(gates.dtype)
    else:
        per_route = _looped(x, order, sizes, cap, missed, k, w1, b1, w2, b2)
    return _combine(per_route.view(k, n, -1), gates.to(per_route.dtype)), stats


def _combine(per_route: Tensor, gates: Tensor) -> Tensor:
    """``Σ_j gates[:, j] · per_route[j]`` over the (k, N, d) route outputs: k contiguous
    multiply-adds (a strided reduction is slower; unbinding keeps the backward from filling
    a full-size zero gradient per slice)."""
    ys = per_route.unbind(0)
    gs = gates.t().unsqueeze(-1).unbind(0)
    out = ys[0] * gs[0]
    for y, g in zip(ys[1:], gs[1:]):
        out = torch.addcmul(out, y, g)
    return out


def _positions(ranked: Tensor, counts: Tensor, missed: int) -> Tensor:
    """Place of each sorted route in its expert's queue (missed routes, −1, sort first)."""
    starts = torch.cumsum(counts, 0) - counts + missed
    return torch.arange(ranked.numel(), device=ranked.device) - starts[ranked.clamp(min=0)]


def _padded(x: Tensor, order: Tensor, ranked: Tensor, counts: Tensor, cap: int, missed: int,
            k: int, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """Per-route outputs (j-major: route ``(n, j)`` at row ``j·N + n``) from every expert's
    queue padded to ``cap`` rows: two
    batched GEMMs (E, cap, ·). A dropped or missed route gets some row's output (the caller
    weighs it by zero); padding rows compute token 0 and are never read."""
    n_exp = w1.shape[0]
    position = _positions(ranked, counts, missed)
    kept = (ranked >= 0) & (position < cap)
    sorted_slot = torch.where(kept, ranked.clamp(min=0) * cap + position, torch.zeros_like(position))
    slot = torch.empty_like(sorted_slot)
    slot[order] = sorted_slot                                     # padded row of each route
    slot = slot.view(-1, k).t().reshape(-1)                       # j-major: (k, N) routes
    source = torch.zeros(n_exp * cap, dtype=torch.long, device=x.device)
    source[sorted_slot[kept]] = (order // k)[kept]                # token of each padded row
    xp = x.index_select(0, source).view(n_exp, cap, -1)
    h = F.gelu(torch.bmm(xp, w1.transpose(1, 2)).add_(b1.unsqueeze(1)))
    yp = torch.bmm(h, w2.transpose(1, 2)).add_(b2.unsqueeze(1))
    return yp.view(n_exp * cap, -1).index_select(0, slot)


def _looped(x: Tensor, order: Tensor, sizes: list[int], cap: int, missed: int, k: int,
            w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """Per-route outputs (j-major as :func:`_padded`, zeros for dropped or missed routes): one
    GEMM pair per expert on its contiguous slice of the sorted routes."""
    xs = x.index_select(0, order // k)
    w1s, b1s, w2s, b2s = w1.unbind(0), b1.unbind(0), w2.unbind(0), b2.unbind(0)
    d_out = w2.shape[1]
    parts = [x.new_zeros(missed, d_out)] if missed else []
    start = missed
    for e, c in enumerate(sizes):
        take = min(c, cap)
        if take:
            parts.append(expert_forward(xs[start:start + take], w1s[e], b1s[e], w2s[e], b2s[e]))
        if c > take:
            parts.append(x.new_zeros(c - take, d_out))
        start += c
    ys = torch.cat(parts) if len(parts) > 1 else parts[0]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return ys.index_select(0, inverse.view(-1, k).t().reshape(-1))   # j-major: (k, N) routes


def dispatch_per_token(x: Tensor, idx: Tensor, gates: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
                       b2: Tensor) -> Tensor:
    """The same sum as :func:`dispatch_reordered`, one token and one route at a time."""
    rows = []
    for i in range(x.shape[0]):
        acc = x.new_zeros(w2.shape[1])
        for j in range(idx.shape[1]):
            e = int(idx[i, j])
            acc = acc + gates[i, j] * expert_forward(x[i:i + 1], w1[e], b1[e], w2[e], b2[e])[0]
        rows.append(acc)
    return torch.stack(rows)
