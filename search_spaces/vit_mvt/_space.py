"""The ViT-MVT search space: sampling, mutation, crossover, validation and counting."""
from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from automtl.errors import ArchError, ConfigError
from automtl.spaces.base import Candidate, SupernetSpace

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ._supernet import ViTMVTSupernet

from . import _genes as G
from ._config import DEFAULT_OUTPUTS, LINEARS, PRESETS, SHARED, SPECIFIC, Arch, SpaceConfig
from ._counting import ParamTable, count_arch, head_params

#: candidates whose parsed form a space keeps (a few hundred bytes each)
_PARSE_MEMO = 50_000


class ViTMVTSpace(SupernetSpace):
    """Elastic ViT-MVT architectures plus per-layer, per-task sharing of the adaptive linears.

    Example::

        space = build_space("tiny", tasks=("cls", "seg"))
        cand = space.sample(random.Random(0))
        space.count_params(cand)   # {"cls": …, "seg": …, "total": …}
    """

    #: a search writes its best candidate in the released subnet YAML format
    best_filename = "best_subnet.yaml"

    def __init__(self, cfg: SpaceConfig, tasks: Sequence[str] = ("cls", "seg"), *,
                 num_outputs: Mapping[str, int] | None = None,
                 head_kinds: Mapping[str, str] | None = None) -> None:
        tasks = tuple(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ConfigError(f"tasks must be unique and non-empty, got {list(tasks)}", key="tasks")
        for t in tasks:
            if not t or "." in t:
                raise ConfigError(f"task name {t!r} must be non-empty and hold no '.'", key="tasks")
        outputs = dict(num_outputs or {})
        for t in tasks:
            if t not in outputs:
                if t not in DEFAULT_OUTPUTS:
                    raise ConfigError(f"no default output size for task {t!r}; pass num_outputs",
                                      key="num_outputs")
                outputs[t] = DEFAULT_OUTPUTS[t]
        kinds = {t: ("cls" if t.startswith("cls") else "dense") for t in tasks}
        kinds.update(head_kinds or {})
        for t, k in kinds.items():
            if k not in ("cls", "dense"):
                raise ConfigError(f"head kind of {t!r} must be 'cls' or 'dense', got {k!r}",
                                  key="head_kinds")
        self.cfg = cfg
        self.tasks = tasks
        self.num_outputs = {t: int(outputs[t]) for t in tasks}
        self.head_kinds = {t: kinds[t] for t in tasks}
        self.name = f"vit_mvt_{cfg.name}"
        self._table = ParamTable(cfg, tasks, self.num_outputs)
        self._known = self._known_genes()
        self._memo: dict[tuple, list] = {}
        self._extremes: dict[bool, Candidate] = {}

    def __repr__(self) -> str:
        return f"ViTMVTSpace({self.cfg.name!r}, tasks={self.tasks})"

    def with_tasks(self, tasks: Sequence[str]) -> ViTMVTSpace:
        """The same architecture space serving other tasks."""
        outputs = {t: n for t, n in self.num_outputs.items() if t in tasks}
        kinds = {t: k for t, k in self.head_kinds.items() if t in tasks}
        return ViTMVTSpace(self.cfg, tasks, num_outputs=outputs, head_kinds=kinds)

    # ---------------------------------------------------------------- genes
    @property
    def multi(self) -> bool:
        """Whether sharing genes exist (more than one task)."""
        return len(self.tasks) > 1

    def _layer_genes(self, i: int, rng: random.Random) -> dict[str, Any]:
        c = self.cfg
        if c.has_ffn_genes:
            return self._ffn_layer_genes(i, rng)
        genes: dict[str, Any] = {G.heads_key(i): rng.choice(c.heads),
                                 G.ratio_key(i): float(rng.choice(c.mlp_ratios))}
        if self.multi:
            for lin in LINEARS:
                for t in self.tasks:
                    genes[G.share_key(i, lin, t)] = rng.choice((SHARED, SPECIFIC))
        return genes

    def _ffn_layer_genes(self, i: int, rng: random.Random) -> dict[str, Any]:
        """Heads, FFN kind, then the kind's own genes (ratio, or experts and top-k) and the
        sharing genes of the layer's linears."""
        c = self.cfg
        kind = rng.choice(c.layer_kinds(i))
        genes: dict[str, Any] = {G.heads_key(i): rng.choice(c.heads), G.ffn_key(i): kind}
        if kind == "moe":
            n = rng.choice(c.num_experts)
            genes[G.experts_key(i)] = n
            genes[G.topk_key(i)] = rng.choice([k for k in c.top_ks if k <= n])
        else:
            genes[G.ratio_key(i)] = float(rng.choice(c.mlp_ratios))
        if self.multi:
            for lin in G.layer_linears(kind):
                for t in self.tasks:
                    genes[G.share_key(i, lin, t)] = rng.choice((SHARED, SPECIFIC))
        return genes

    def _complete(self, cand: Candidate, rng: random.Random,
                  parents: Sequence[Mapping[str, Any]] = ()) -> None:
        """Give every layer the genes its FFN kind needs (drawn when missing) and a top-k no
        larger than its number of experts (a parent's, if one fits, else the largest that fits)."""
        c = self.cfg
        for i in range(cand[G.DEPTH]):
            fk, rk, ek, kk = G.ffn_key(i), G.ratio_key(i), G.experts_key(i), G.topk_key(i)
            if fk not in cand:
                cand[fk] = rng.choice(c.layer_kinds(i))
            if cand[fk] != "moe":
                if rk not in cand:
                    cand[rk] = float(rng.choice(c.mlp_ratios))
                continue
            if ek not in cand:
                cand[ek] = rng.choice(c.num_experts)
            fits = [k for k in c.top_ks if k <= cand[ek]]
            if kk not in cand:
                cand[kk] = rng.choice(fits)
            if cand[kk] not in fits:
                alts = [p[kk] for p in parents if p.get(kk) in fits]
                cand[kk] = alts[0] if alts else fits[-1]

    def sample(self, rng: random.Random) -> Candidate:
        """Draw depth and width uniformly, then every gene of each active layer."""
        depth = rng.choice(self.cfg.depths)
        cand: Candidate = {G.DEPTH: depth, G.EMBED: rng.choice(self.cfg.embeds)}
        for i in range(depth):
            cand.update(self._layer_genes(i, rng))
        return dict(sorted(cand.items()))

    def mutate(self, candidate: Candidate, rng: random.Random, *, p_layer: float = 0.2,
               p_global: float = 0.4) -> Candidate:
        """Resample depth / width with ``p_global`` and each per-layer gene with ``p_layer``."""
        cand = self.canonical(candidate)
        if rng.random() < p_global:
            depth = rng.choice(self.cfg.depths)
            old = cand[G.DEPTH]
            cand[G.DEPTH] = depth
            for i in range(old, depth):
                cand.update(self._layer_genes(i, rng))
        if rng.random() < p_global:
            cand[G.EMBED] = rng.choice(self.cfg.embeds)
        for i in range(cand[G.DEPTH]):
            fresh = self._layer_genes(i, rng)
            for key, value in fresh.items():
                if rng.random() < p_layer:
                    cand[key] = value
        if self.cfg.has_ffn_genes:
            self._complete(cand, rng)
        return self.canonical(cand)

    def can_crossover(self, a: Candidate, b: Candidate) -> bool:
        """Only parents of the same depth are crossed (AutoFormer / ViT-MVT rule)."""
        return a.get(G.DEPTH) == b.get(G.DEPTH)

    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        """Each gene from either parent with probability 1/2."""
        if not self.can_crossover(a, b):
            raise ArchError(f"crossover needs parents of the same depth, got {a.get(G.DEPTH)} "
                            f"and {b.get(G.DEPTH)}", key=G.DEPTH)
        ca, cb = self.canonical(a), self.canonical(b)
        if not self.cfg.has_ffn_genes:
            return {k: (ca[k] if rng.random() < 0.5 else cb[k]) for k in ca}
        # layers of different kinds hold different genes: take each from a parent holding it
        child = {k: (ca[k] if k in ca and (k not in cb or rng.random() < 0.5) else cb[k])
                 for k in sorted(set(ca) | set(cb))}
        self._complete(child, rng, parents=(ca, cb))
        return self.canonical(child)

    def canonical(self, candidate: Candidate) -> Candidate:
        """Validated normal form: typed values, genes beyond the depth dropped, sharing filled
        (a fresh dict each call)."""
        entry = self._memo_entry(candidate)
        if entry is None:
            return G.to_genes(self.parse(candidate), self.tasks)
        if entry[1] is None:
            entry[1] = G.to_genes(entry[0], self.tasks)
        return dict(entry[1])

    # ---------------------------------------------------------------- checks and counts
    def parse(self, candidate: Mapping[str, Any]) -> Arch:
        """Validate and parse a candidate into an :class:`Arch`."""
        entry = self._memo_entry(candidate)
        return G.parse(candidate, self.cfg, self.tasks) if entry is None else entry[0]

    def _memo_entry(self, candidate: Mapping[str, Any]) -> list | None:
        """``[arch, genes or None]`` of ``candidate``, parsed (and validated) once: a search
        parses the same parents and children many times, ~0.2 ms each. A value's type is part
        of the memo key, so ``13``, ``13.0`` and ``True`` are each validated. ``None`` for a
        candidate with unhashable values (the caller's parse then says what is wrong)."""
        try:
            key = tuple(sorted((k, type(v), v) for k, v in candidate.items()))
            entry = self._memo.get(key)
        except TypeError:
            return None
        if entry is None:
            arch = G.parse(candidate, self.cfg, self.tasks)
            if len(self._memo) >= _PARSE_MEMO:
                self._memo.clear()
            entry = self._memo[key] = [arch, None]
        return entry

    def validate(self, candidate: Candidate) -> None:
        """Raise :class:`ArchError` naming the offending key if outside the space."""
        self.parse(candidate)

    def _known_genes(self) -> frozenset[str]:
        """Every gene name of a space without FFN genes: what the fast counts accept."""
        c = self.cfg
        keys = {G.DEPTH, G.EMBED}
        for i in range(c.max_depth):
            keys.update((G.heads_key(i), G.ratio_key(i)))
            keys.update(G.share_key(i, lin, t) for lin in LINEARS for t in self.tasks)
        return frozenset(keys)

    def _check_names(self, candidate: Mapping[str, Any]) -> None:
        """Refuse a gene the space does not have (the fast counts would ignore it): one set
        comparison, then :class:`ArchError` naming the gene and the accepted patterns."""
        if not isinstance(candidate, Mapping):
            raise ArchError(f"a candidate must be a mapping of genes, got {type(candidate).__name__}")
        if not self._known.issuperset(candidate):
            for key in candidate:
                G.check_key(key, self.cfg, self.tasks)
            odd = sorted(str(k) for k in candidate if k not in self._known)
            raise ArchError("unknown gene (not in the canonical spelling, e.g. 'num_heads.1')",
                            key=odd[0])

    def count_params(self, candidate: Candidate,
                     sharing: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Exact parameters ``{task: n, …, "total": n}``; shared weights counted once.

        ``sharing`` (optional) holds sharing genes kept apart from the architecture genes;
        missing sharing genes mean ``"shared"``. For speed only the genes that the count
        reads are checked (a missing or out-of-choice one, or a gene the space does not have,
        raises :class:`ArchError`); call :meth:`validate` for the full check.
        """
        if sharing:
            candidate = {**candidate, **sharing}
        if self.cfg.has_ffn_genes or self.cfg.budget == "active":
            return count_arch(self.parse(candidate), self.cfg, self.tasks, self.num_outputs,
                              active=self.cfg.budget == "active")
        self._check_names(candidate)
        try:
            return self._table.count(candidate)
        except (KeyError, TypeError, IndexError) as exc:
            self.validate(candidate)
            raise ArchError(f"cannot count parameters: {exc!r}") from exc

    def count_active(self, candidate: Candidate) -> dict[str, int]:
        """Parameters one token of each task touches ``{task: n, …, "total": largest}``: an
        MoE layer counts its top-k experts and the task's routing (what M3ViT's per-task
        inference reads); other layers count as in :meth:`count_params`."""
        return count_arch(self.parse(candidate), self.cfg, self.tasks, self.num_outputs, active=True)

    def count_total(self, candidate: Candidate) -> dict[str, int]:
        """Stored parameters ``{task: n, …, "total": n}`` whatever the space's ``budget``."""
        if self.cfg.budget == "total":
            return self.count_params(candidate)
        return count_arch(self.parse(candidate), self.cfg, self.tasks, self.num_outputs)

    def backbone_params(self, candidate: Candidate) -> int:
        """Parameters of one task's backbone (stem to final norm, no head)."""
        if self.cfg.has_ffn_genes:
            t = self.tasks[0]
            arch = self.parse(candidate)
            own = count_arch(arch, self.cfg, self.tasks, self.num_outputs)[t]
            return own - head_params(arch.embed, self.num_outputs[t])
        self._check_names(candidate)
        try:
            return self._table.backbone(candidate)
        except (KeyError, TypeError, IndexError) as exc:
            self.validate(candidate)
            raise ArchError(f"cannot count parameters: {exc!r}") from exc

    def smallest(self) -> Candidate:
        """The smallest candidate (every choice at its minimum, everything shared; per layer
        the FFN option with the fewest counted parameters)."""
        c = self.cfg
        if c.has_ffn_genes:
            return self._extreme(largest=False)
        return self._uniform(c.depths[0], c.embeds[0], c.heads[0], c.mlp_ratios[0], SHARED)

    def largest(self) -> Candidate:
        """The largest candidate (every choice at its maximum, everything task-specific; per
        layer the FFN option with the most counted parameters)."""
        c = self.cfg
        if c.has_ffn_genes:
            return self._extreme(largest=True)
        return self._uniform(c.depths[-1], c.embeds[-1], c.heads[-1], c.mlp_ratios[-1], SPECIFIC)

    def _ffn_options(self, i: int, largest: bool) -> list[dict[str, Any]]:
        """The FFN genes layer ``i`` may take (top-k at its extreme for each expert count)."""
        c = self.cfg
        opts: list[dict[str, Any]] = []
        for kind in c.layer_kinds(i):
            if kind == "moe":
                for n in c.num_experts:
                    fits = [k for k in c.top_ks if k <= n]
                    opts.append({G.ffn_key(i): kind, G.experts_key(i): n,
                                 G.topk_key(i): fits[-1] if largest else fits[0]})
            else:
                opts += [{G.ffn_key(i): kind, G.ratio_key(i): float(r)} for r in c.mlp_ratios]
        return opts

    def _extreme(self, *, largest: bool) -> Candidate:
        """Depth, width and heads at their extreme; each layer's FFN option chosen by its
        exact count (counts add up per layer, so the choice per layer is exact)."""
        if largest in self._extremes:
            return dict(self._extremes[largest])
        c = self.cfg
        pick = -1 if largest else 0
        share = SPECIFIC if largest else SHARED
        depth = c.depths[pick]
        cand: Candidate = {G.DEPTH: depth, G.EMBED: c.embeds[pick]}
        for i in range(depth):
            cand[G.heads_key(i)] = c.heads[pick]
            cand.update(self._ffn_options(i, largest)[0])
            if self.multi:
                for lin in LINEARS:
                    for t in self.tasks:
                        cand[G.share_key(i, lin, t)] = share
        for i in range(depth):
            best, best_n = None, None
            for opt in self._ffn_options(i, largest):
                trial = {k: v for k, v in cand.items()
                         if k not in (G.ratio_key(i), G.experts_key(i), G.topk_key(i))}
                trial.update(opt)
                n = self.count_params(trial)["total"]
                if best_n is None or (n > best_n if largest else n < best_n):
                    best, best_n = trial, n
            assert best is not None  # every layer has at least one option
            cand = best
        self._extremes[largest] = self.canonical(cand)
        return dict(self._extremes[largest])

    def _uniform(self, depth: int, embed: int, heads: int, ratio: float, share: str) -> Candidate:
        cand: Candidate = {G.DEPTH: depth, G.EMBED: embed}
        for i in range(depth):
            cand[G.heads_key(i)] = heads
            cand[G.ratio_key(i)] = float(ratio)
            if self.multi:
                for lin in LINEARS:
                    for t in self.tasks:
                        cand[G.share_key(i, lin, t)] = share
        return dict(sorted(cand.items()))

    def save(self, candidate: Candidate, path: str | os.PathLike[str]) -> Path:
        """Write ``candidate`` as a subnet YAML (:func:`~search_spaces.vit_mvt.save_subnet`)."""
        from ._io import save_subnet

        save_subnet(self.canonical(candidate), path)
        return Path(path)

    # -- the weight-entangled supernet -------------------------------------------------
    def build_supernet(self, **kwargs: Any) -> nn.Module:
        """:func:`~search_spaces.vit_mvt.build_supernet` of this space (``kwargs``: its options)."""
        from ._supernet import build_supernet

        return build_supernet(self, **kwargs)

    def activate(self, net: nn.Module, candidate: Candidate) -> None:
        """``net.set_arch(candidate)``: depth, widths and sharing of the candidate."""
        cast("ViTMVTSupernet", net).set_arch(candidate)

    def forward(self, net: nn.Module, x: Tensor, task: str) -> Tensor:
        """``task``'s output of the active subnet."""
        return net(x, task)

    def param_range(self) -> tuple[int, int]:
        """Exact smallest and largest ``"total"`` over the space."""
        return self.count_params(self.smallest())["total"], self.count_params(self.largest())["total"]

    def gene_choices(self) -> dict[str, list[Any]]:
        """Every gene of the deepest candidate with its allowed values."""
        c = self.cfg
        out: dict[str, list[Any]] = {G.DEPTH: list(c.depths), G.EMBED: list(c.embeds)}
        for i in range(c.max_depth):
            kinds = c.layer_kinds(i)
            out[G.heads_key(i)] = list(c.heads)
            if kinds != ("moe",):
                out[G.ratio_key(i)] = [float(r) for r in c.mlp_ratios]
            if c.has_ffn_genes:
                out[G.ffn_key(i)] = list(kinds)
            if "moe" in kinds:
                out[G.experts_key(i)] = list(c.num_experts)
                out[G.topk_key(i)] = list(c.top_ks)
            if self.multi:
                linears = LINEARS if kinds != ("moe",) else G.layer_linears("moe")
                for lin in linears:
                    for t in self.tasks:
                        out[G.share_key(i, lin, t)] = [SHARED, SPECIFIC]
        return dict(sorted(out.items()))


def build_space(name: str | SpaceConfig = "tiny", tasks: Sequence[str] = ("cls", "seg"), *,
                num_outputs: Mapping[str, int] | None = None,
                head_kinds: Mapping[str, str] | None = None) -> ViTMVTSpace:
    """The ViT-MVT space ``"tiny"``, ``"small"`` or ``"base"``, an MoE preset (``"m3vit_small"``,
    ``"edge_moe_tiny"``) or a custom :class:`SpaceConfig`, serving ``tasks``."""
    if isinstance(name, SpaceConfig):
        cfg = name
    elif name in PRESETS:
        cfg = PRESETS[name]
    else:
        raise ConfigError(f"unknown space {name!r}; expected one of {sorted(PRESETS)}", key="name")
    return ViTMVTSpace(cfg, tasks, num_outputs=num_outputs, head_kinds=head_kinds)
