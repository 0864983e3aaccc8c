"""Step 2 of delta sharing: fix the support of every weight delta at a target density.

The support is one global top-k over all deltas: the entries that are non-zero after the L0
step, largest first, then (if too few are non-zero) the closed ones whose gates were closest to
opening. ``k = round(density · Σ entries)``, so the density after this step is the target.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from automtl.delta.weights import WeightDelta, check_density
from automtl.errors import ModelError


def fix_support(deltas: Sequence[WeightDelta], density: float) -> float:
    """Keep the top ``density`` fraction of all ΔW entries of ``deltas``; returns the density reached."""
    density = check_density(density)
    deltas = list(deltas)
    if not deltas:
        raise ModelError("no weight deltas to fix a support for (does the policy use 'delta'?)")
    ranked = [d.ranking() for d in deltas]
    top = max(float(eff.max()) for eff, _ in ranked) or 1.0
    scores = torch.cat([torch.where(eff > 0, 2.0 + eff / top, prob.clamp(0.0, 1.0)) for eff, prob in ranked])
    total = scores.numel()
    k = min(total, max(1, round(density * total)))
    chosen = torch.topk(scores, k, sorted=False).indices
    keep = torch.zeros(total, dtype=torch.bool)
    keep[chosen.cpu()] = True
    start = 0
    for d in deltas:
        own = keep[start:start + d.numel].nonzero().squeeze(1)
        d.set_support(own)
        start += d.numel
    return k / total


def delta_density(deltas: Sequence[WeightDelta]) -> float:
    """Fraction of non-zero ΔW entries over ``deltas`` (biases excluded)."""
    total = sum(d.numel for d in deltas)
    if not total:
        return 0.0
    return sum(d.density() * d.numel for d in deltas) / total
