"""A synthetic layered search space whose fitness is an exact function of the genes.

It mirrors the shape of the real spaces (a global depth and width, per-layer genes,
per-layer × task sharing genes, shared weights counted once) so the search machinery can be
tested and benchmarked without a supernet: the in-budget optimum is known by enumeration.

Example::

    import random
    from automtl.spaces import LayeredToySpace
    space = LayeredToySpace()
    cand = space.sample(random.Random(0))
    space.count_params(cand)["total"], space.scores(cand)
"""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from automtl.errors import ArchError
from automtl.spaces.base import Candidate, SearchSpace, check_int, check_int_choices, check_names

SHARE, SPECIALIZE = "share", "specialize"
#: the deepest depth choice (every layer of the deepest candidate has its genes)
MAX_DEPTH = 256


class LayeredToySpace(SearchSpace):
    """``depth`` layers of width ``embed``; each layer has an MLP ``ratio.i`` and, per task, a
    ``share.i.task`` gene (one shared copy vs. a task-specific copy of the layer).

    Parameters of a layer: ``2·E²·r + E·r + E``; a stem ``8·E`` shared by all tasks and a head
    ``10·E + 10`` per task. A task's score is
    ``Σ_l a[t,l] · log2(1 + E·r/16) · (1 + λ[t,l]·specialized)`` with ``a``, ``λ`` drawn once from
    ``seed``: bigger, deeper and more specialised is better, so the optimum sits on the budget.
    ``depths`` (1..``MAX_DEPTH``), ``embeds`` and ``ratios`` are positive ints and ``tasks``
    distinct names; anything else is a :class:`~automtl.errors.ConfigError` naming the argument.
    """

    name = "toy_layered"

    def __init__(self, *, tasks: Sequence[str] = ("cls", "seg"), depths: Sequence[int] = (2, 3, 4),
                 embeds: Sequence[int] = (16, 24, 32), ratios: Sequence[int] = (2, 3, 4),
                 seed: int = 0) -> None:
        self.tasks = check_names(tasks, key="tasks")
        self.depths = check_int_choices(depths, key="depths", maximum=MAX_DEPTH)
        self.embeds = check_int_choices(embeds, key="embeds")
        self.ratios = check_int_choices(ratios, key="ratios")
        self.seed = check_int(seed, key="seed")
        rng = random.Random(seed)
        dmax = self.depths[-1]
        self._a = {(t, i): rng.uniform(0.5, 1.5) for t in self.tasks for i in range(dmax)}
        self._lam = {(t, i): rng.uniform(0.0, 0.6) for t in self.tasks for i in range(dmax)}

    # -- genes -------------------------------------------------------------------------
    def _layer_choices(self, i: int) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {f"ratio.{i}": self.ratios}
        for t in self.tasks:
            out[f"share.{i}.{t}"] = (SHARE, SPECIALIZE)
        return out

    def gene_choices(self) -> Mapping[str, Sequence[Any]]:
        """All genes of the deepest candidate with their values."""
        out: dict[str, Sequence[Any]] = {"depth": self.depths, "embed": self.embeds}
        for i in range(self.depths[-1]):
            out.update(self._layer_choices(i))
        return out

    def _random_layer(self, i: int, rng: random.Random) -> Candidate:
        return {k: rng.choice(v) for k, v in self._layer_choices(i).items()}

    def sample(self, rng: random.Random) -> Candidate:
        """A uniformly random candidate (depth first, then every gene of its layers)."""
        cand: Candidate = {"depth": rng.choice(self.depths), "embed": rng.choice(self.embeds)}
        for i in range(cand["depth"]):
            cand.update(self._random_layer(i, rng))
        return cand

    def mutate(self, candidate: Candidate, rng: random.Random, *, p_layer: float = 0.2,
               p_global: float = 0.4) -> Candidate:
        """Resample depth/embed with ``p_global`` and each per-layer gene with ``p_layer``."""
        old = dict(candidate)
        out: Candidate = {"depth": old["depth"], "embed": old["embed"]}
        if rng.random() < p_global:
            out["depth"] = rng.choice(self.depths)
        if rng.random() < p_global:
            out["embed"] = rng.choice(self.embeds)
        for i in range(out["depth"]):
            for k, choices in self._layer_choices(i).items():
                if k not in old or rng.random() < p_layer:
                    out[k] = rng.choice(choices)
                else:
                    out[k] = old[k]
        return out

    def can_crossover(self, a: Candidate, b: Candidate) -> bool:
        """Only parents of the same depth are crossed (as in AutoFormer)."""
        return a.get("depth") == b.get("depth")

    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        """Each gene from ``a`` or ``b`` with probability 1/2."""
        return {k: (a[k] if rng.random() < 0.5 else b[k]) for k in sorted(a)}

    # -- size and validity -------------------------------------------------------------
    @staticmethod
    def layer_params(embed: int, ratio: int) -> int:
        """Parameters of one layer (two linear maps with biases)."""
        return 2 * embed * embed * ratio + embed * ratio + embed

    def count_params(self, candidate: Candidate) -> dict[str, int]:
        """Per task: stem + every layer once + its head; total: shared copies counted once."""
        e, d = candidate["embed"], candidate["depth"]
        stem, head = 8 * e, 10 * e + 10
        per_task = {t: stem + head for t in self.tasks}
        total = stem + head * len(self.tasks)
        for i in range(d):
            p = self.layer_params(e, candidate[f"ratio.{i}"])
            spec = [candidate[f"share.{i}.{t}"] == SPECIALIZE for t in self.tasks]
            copies = (0 if all(spec) else 1) + sum(spec)
            total += p * copies
            for t in self.tasks:
                per_task[t] += p
        return {**per_task, "total": total}

    def validate(self, candidate: Candidate) -> None:
        """Raise :class:`ArchError` naming the first gene that is missing, unknown or out of range."""
        if not isinstance(candidate, Mapping):
            raise ArchError(f"a candidate must be a dict of genes, got {type(candidate).__name__}")
        choices = self.gene_choices()
        for g in ("depth", "embed"):
            if g not in candidate:
                raise ArchError("missing gene", key=g)
            if candidate[g] not in choices[g]:
                raise ArchError(f"value {candidate[g]!r} not in {list(choices[g])}", key=g,
                                value=candidate[g])
        expected = {"depth", "embed"}
        for i in range(candidate["depth"]):
            expected.update(self._layer_choices(i))
        for k in sorted(expected):
            if k not in candidate:
                raise ArchError("missing gene", key=k)
            if candidate[k] not in choices[k]:
                raise ArchError(f"value {candidate[k]!r} not in {list(choices[k])}", key=k,
                                value=candidate[k])
        extra = sorted(set(candidate) - expected)
        if extra:
            raise ArchError(f"gene not in a depth-{candidate['depth']} candidate", key=extra[0])

    def largest(self) -> Candidate:
        """All maximal and all specialised."""
        return self._extreme(True)

    def smallest(self) -> Candidate:
        """All minimal and all shared."""
        return self._extreme(False)

    def _extreme(self, big: bool) -> Candidate:
        pick = (lambda v: v[-1]) if big else (lambda v: v[0])
        cand: Candidate = {"depth": pick(self.depths), "embed": pick(self.embeds)}
        for i in range(cand["depth"]):
            cand[f"ratio.{i}"] = pick(self.ratios)
            for t in self.tasks:
                cand[f"share.{i}.{t}"] = SPECIALIZE if big else SHARE
        return cand

    def param_range(self) -> tuple[int, int]:
        """Smallest (all minimal, all shared) and largest (all maximal, all specialised) total."""
        return (self.count_params(self.smallest())["total"],
                self.count_params(self.largest())["total"])

    # -- the known answer ---------------------------------------------------------------
    def scores(self, candidate: Candidate) -> dict[str, float]:
        """The exact per-task score of ``candidate`` (higher is better)."""
        e = candidate["embed"]
        out = {}
        for t in self.tasks:
            s = 0.0
            for i in range(candidate["depth"]):
                cap = math.log2(1 + e * candidate[f"ratio.{i}"] / 16)
                spec = candidate[f"share.{i}.{t}"] == SPECIALIZE
                s += self._a[(t, i)] * cap * (1 + self._lam[(t, i)] * spec)
            out[t] = s
        return out

    def enumerate(self) -> Iterator[Candidate]:
        """Every candidate of the space (67,824 with the defaults)."""
        for d in self.depths:
            layer_keys = [list(self._layer_choices(i).items()) for i in range(d)]
            flat = [(k, v) for lk in layer_keys for k, v in lk]
            for e in self.embeds:
                for values in itertools.product(*(v for _, v in flat)):
                    cand: Candidate = {"depth": d, "embed": e}
                    cand.update(zip((k for k, _ in flat), values))
                    yield cand

    def optimum(self, budget: tuple[int, int], weights: Mapping[str, float] | None = None
                ) -> tuple[Candidate, float]:
        """The best in-budget candidate under the weighted sum of scores, exactly.

        Score and size are sums over layers once depth and width are fixed, so a dynamic
        programme over reachable layer-parameter totals (keeping the best score per total)
        is exact and fast even where the space is far too large to enumerate.
        """
        lo, hi = budget
        w = {t: 1.0 for t in self.tasks} if weights is None else dict(weights)
        patterns = list(itertools.product((SHARE, SPECIALIZE), repeat=len(self.tasks)))
        best, best_val = None, -math.inf
        for e in self.embeds:
            fixed = 8 * e + (10 * e + 10) * len(self.tasks)
            for d in self.depths:
                # total layer params -> (score, genes of layers so far)
                states: dict[int, tuple[float, tuple[tuple[int, tuple[str, ...]], ...]]] = {
                    0: (0.0, ())}
                for i in range(d):
                    nxt: dict[int, tuple[float, tuple[tuple[int, tuple[str, ...]], ...]]] = {}
                    for r in self.ratios:
                        p = self.layer_params(e, r)
                        cap = math.log2(1 + e * r / 16)
                        for pat in patterns:
                            spec = [x == SPECIALIZE for x in pat]
                            copies = (0 if all(spec) else 1) + sum(spec)
                            gain = sum(w[t] * self._a[(t, i)] * cap * (1 + self._lam[(t, i)] * sp)
                                       for t, sp in zip(self.tasks, spec))
                            for tot, (val, genes) in states.items():
                                n = tot + p * copies
                                if fixed + n > hi:
                                    continue
                                v = val + gain
                                if n not in nxt or v > nxt[n][0]:
                                    nxt[n] = (v, genes + ((r, pat),))
                    states = nxt
                for tot, (val, genes) in states.items():
                    if lo <= fixed + tot and val > best_val:
                        cand: Candidate = {"depth": d, "embed": e}
                        for i, (r, pat) in enumerate(genes):
                            cand[f"ratio.{i}"] = r
                            for t, x in zip(self.tasks, pat):
                                cand[f"share.{i}.{t}"] = x
                        best, best_val = cand, val
        if best is None:
            raise ArchError(f"no candidate has between {lo} and {hi} parameters")
        return best, best_val
