"""Exact, analytic parameter counts of ViT-MVT subnets from precomputed per-layer tables.

Every learnable tensor of the exported model is accounted for here (BatchNorm running
statistics are buffers, not parameters). The tables make one count a few dictionary
look-ups per layer, fast enough to run for every candidate of a search.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from ._config import HEAD_DIM, LINEARS, PATCH, SE_REDUCTION, SHARED, SPECIFIC, STEM_CHANNELS, SpaceConfig
from ._genes import DEPTH, EMBED, heads_key, ratio_key, share_key

_C = STEM_CHANNELS


def stem_params() -> int:
    """7×7/2 conv 3→64 + BN, then two 3×3 convs 64→64 + BN (convs without bias)."""
    return 3 * _C * 49 + 2 * _C + 2 * (_C * _C * 9 + 2 * _C)


def linear_sizes(embed: int, heads: int, hidden: int) -> dict[str, int]:
    """Parameters (weight + bias) of each adaptive linear of one block."""
    qkv_out = 3 * HEAD_DIM * heads
    return {"qkv": embed * qkv_out + qkv_out,
            "proj": HEAD_DIM * heads * embed + embed,
            "fc1": embed * hidden + hidden,
            "fc2": hidden * embed + embed}


def block_fixed(embed: int, heads: int, hidden: int, grid: int) -> int:
    """Parameters of one block outside the adaptive linears (always shared across tasks)."""
    lpu = embed * 9 + embed                       # depthwise 3×3 with bias
    norms = 4 * embed                             # two LayerNorms
    rel = (2 * grid - 1) ** 2 * heads             # relative position bias table
    r = embed // SE_REDUCTION
    se = embed * r + r + r * embed + embed        # MHSE: E→E/8→E with biases
    dw = hidden * 9 + hidden                      # DWres depthwise 3×3 with bias
    return lpu + norms + rel + se + dw


def global_params(embed: int, grid: int) -> int:
    """Stem, patch convolution, position embedding and the final LayerNorm."""
    return stem_params() + (_C * PATCH * PATCH * embed + embed) + embed * grid * grid + 2 * embed


def head_params(embed: int, outputs: int) -> int:
    """A task head: linear (classification) or 1×1 conv (dense), both with bias."""
    return embed * outputs + outputs


class ParamTable:
    """Precomputed per-width, per-layer parameter tables of one space and task set."""

    def __init__(self, cfg: SpaceConfig, tasks: Sequence[str], outputs: Mapping[str, int]) -> None:
        self.tasks = tuple(tasks)
        self.multi = len(self.tasks) > 1
        g = cfg.grid
        self._glob = {e: global_params(e, g) for e in cfg.embeds}
        self._heads = {e: {t: head_params(e, outputs[t]) for t in self.tasks} for e in cfg.embeds}
        self._heads_sum = {e: sum(v.values()) for e, v in self._heads.items()}
        # per layer: (everything of the attention half, qkv, proj) by heads, and
        # (everything of the FFN half, fc1, fc2) by ratio; fixed parts folded in.
        self._attn: dict[int, dict[int, tuple[int, int, int]]] = {}
        self._ffn: dict[int, dict[float, tuple[int, int, int]]] = {}
        for e in cfg.embeds:
            self._attn[e] = {}
            for h in cfg.heads:
                s = linear_sizes(e, h, 0)
                fixed = block_fixed(e, h, 0, g) - block_fixed(e, 0, 0, g)  # the rel-pos table
                self._attn[e][h] = (fixed + s["qkv"] + s["proj"], s["qkv"], s["proj"])
            self._ffn[e] = {}
            for r in cfg.mlp_ratios:
                hid = int(e * r)
                s = linear_sizes(e, 0, hid)
                fixed = block_fixed(e, 0, hid, g)  # LPU, norms, MHSE, DWres
                self._ffn[e][r] = (fixed + s["fc1"] + s["fc2"], s["fc1"], s["fc2"])
        n = cfg.max_depth
        self._hk = [heads_key(i) for i in range(n)]
        self._rk = [ratio_key(i) for i in range(n)]
        nt = len(self.tasks)
        # per layer and linear: one C-level getter returning the tasks' sharing values, and
        # the extra copies each value tuple costs beyond the first (specific - all-specific)
        self._share_keys = [[tuple(share_key(i, lin, t) for t in self.tasks) for lin in LINEARS]
                            for i in range(n)]
        # (a single task has no sharing genes, hence no getters)
        self._sg: list[tuple[Callable[[Mapping[str, Any]], Any], ...]] = (
            [tuple(itemgetter(*keys) for keys in layer) for layer in self._share_keys] if nt > 1 else [])
        self._extra = {}
        for vals in itertools.product((SHARED, SPECIFIC), repeat=nt):
            n_specific = vals.count(SPECIFIC)
            self._extra[vals] = n_specific - (n_specific == nt)
        # up to 4 tasks: one getter per layer for all 4·T genes and one table look-up giving
        # the four linears' extra copies at once (2^(4T) ≤ 65,536 entries)
        self._layer_get = None
        if 1 < nt <= 4:
            self._layer_get = [itemgetter(*(k for keys in layer for k in keys))
                               for layer in self._share_keys]
            self._extra4 = {}
            for vals in itertools.product((SHARED, SPECIFIC), repeat=4 * nt):
                self._extra4[vals] = tuple(self._extra[vals[j * nt:(j + 1) * nt]] for j in range(4))

    def count(self, c: Mapping[str, Any]) -> dict[str, int]:
        """``{task: n, …, "total": n}`` for a candidate; raises KeyError/TypeError if invalid.

        Missing sharing genes mean ``"shared"``.
        """
        try:
            return self._count(c)
        except KeyError:
            if not self.multi:
                raise
            filled = {k: SHARED for i in range(min(c[DEPTH], len(self._hk)))
                      for keys in self._share_keys[i] for k in keys}
            filled.update(c)
            return self._count(filled)

    def _count(self, c: Mapping[str, Any]) -> dict[str, int]:
        depth = c[DEPTH]
        e = c[EMBED]
        at = self._attn[e]
        ft = self._ffn[e]
        hk, rk = self._hk, self._rk
        single = self._glob[e]
        extra = 0
        if self._layer_get is not None:
            lg, x4 = self._layer_get, self._extra4
            for i in range(depth):
                a = at[c[hk[i]]]
                f = ft[c[rk[i]]]
                single += a[0] + f[0]
                mq, mp, m1, m2 = x4[lg[i](c)]
                extra += a[1] * mq + a[2] * mp + f[1] * m1 + f[2] * m2
        elif self.multi:
            sg, x = self._sg, self._extra
            for i in range(depth):
                a = at[c[hk[i]]]
                f = ft[c[rk[i]]]
                single += a[0] + f[0]
                gq, gp, g1, g2 = sg[i]
                extra += a[1] * x[gq(c)] + a[2] * x[gp(c)] + f[1] * x[g1(c)] + f[2] * x[g2(c)]
        else:
            for i in range(depth):
                single += at[c[hk[i]]][0] + ft[c[rk[i]]][0]
        out = {t: single + n for t, n in self._heads[e].items()}
        out["total"] = single + extra + self._heads_sum[e]
        return out

    def backbone(self, c: Mapping[str, Any]) -> int:
        """Parameters of one task's backbone (no head): what the released subnets report."""
        e = c[EMBED]
        n = self._glob[e]
        for i in range(c[DEPTH]):
            n += self._attn[e][c[self._hk[i]]][0] + self._ffn[e][c[self._rk[i]]][0]
        return n


def expert_params(embed: int, hidden: int) -> int:
    """One expert of an MoE layer: Linear(d→h) and Linear(h→d), both with bias."""
    return 2 * embed * hidden + hidden + embed


def router_params(cfg: SpaceConfig, embed: int, experts: int, n_tasks: int) -> tuple[int, int]:
    """(parameters of every task's routing together, those one task's routing uses) of one
    MoE layer: a gate per task (multi-gate, no bias), or one gate over the token and the task
    embedding (task-conditioned; a dense embedding adds its table, one row per task)."""
    moe = cfg.moe
    if moe.router == "multi_gate":
        return n_tasks * experts * embed, experts * embed
    extra = moe.task_inputs(n_tasks)
    gate = experts * (embed + extra)
    table = 0 if moe.task_embed == "onehot" else extra
    return gate + n_tasks * table, gate + table


def count_arch(arch: Any, cfg: SpaceConfig, tasks: Sequence[str], outputs: Mapping[str, int], *,
               active: bool = False) -> dict[str, int]:
    """``{task: n, …, "total": n}`` of a parsed architecture with any FFN kinds.

    ``active=False``: the stored parameters (each task's own network; ``"total"`` counts
    shared weights once). ``active=True``: the parameters one token of each task touches
    (an MoE layer counts its ``top_k`` experts and the task's routing); ``"total"`` is then
    the largest task's count, what any one task's inference reads.
    """
    g, e = cfg.grid, arch.embed
    n_tasks = len(tasks)
    single = global_params(e, g)
    extra = 0          # additional copies of task-specific linears
    routing = 0        # every task's routing parameters (counted once in the total)
    own_routing = 0    # one task's routing parameters
    expert_total = 0   # experts of every MoE layer (total) or the top-k of each (active)
    for i in range(arch.depth):
        kind, h, hid = arch.kind(i), arch.heads[i], arch.hidden[i]
        sizes = linear_sizes(e, h, 0 if kind == "moe" else hid)
        single += block_fixed(e, h, hid if kind == "locality" else 0, g)
        names = ("qkv", "proj") if kind == "moe" else LINEARS
        for lin in names:
            single += sizes[lin]
            if n_tasks > 1:
                n_specific = sum(not arch.shared(i, lin, t) for t in tasks)
                extra += sizes[lin] * (n_specific - (n_specific == n_tasks))
        if kind == "moe":
            n_exp = arch.top_k[i] if active else arch.experts[i]
            expert_total += n_exp * expert_params(e, hid)
            all_r, one_r = router_params(cfg, e, arch.experts[i], n_tasks)
            routing += all_r
            own_routing += one_r
    heads = {t: head_params(e, outputs[t]) for t in tasks}
    per_task = single + expert_total + own_routing
    out = {t: per_task + heads[t] for t in tasks}
    out["total"] = (max(out.values()) if active else
                    single + extra + expert_total + routing + sum(heads.values()))
    return out
