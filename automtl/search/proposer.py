"""Candidate proposal under a parameter budget: random, mutation, crossover (AutoFormer).

Children outside ``[min_params, max_params]`` or already taken (seen in the study) are
resampled — never penalised and never evaluated.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from automtl.errors import SearchError
from automtl.search.space import Candidate, SearchSpace


@dataclass(frozen=True)
class EvolutionConfig:
    """The AutoFormer/ViT-MVT evolution settings (DESIGN §3 defaults)."""

    population: int = 50
    top_k: int = 10
    n_mutations: int = 25
    n_crossovers: int = 25
    p_layer: float = 0.2
    p_global: float = 0.4
    #: tries of mutation/crossover per child before falling back to a random candidate
    max_child_tries: int = 50
    #: tries of random sampling before concluding the window/space is exhausted
    max_random_tries: int = 5000

    def check(self) -> None:
        """Raise :class:`SearchError` for settings no evolution can run with."""
        if self.population < 2:
            raise SearchError(f"population must be >= 2, got {self.population}")
        if not 1 <= self.top_k:
            raise SearchError(f"top_k must be >= 1, got {self.top_k}")
        if self.n_mutations < 0 or self.n_crossovers < 0:
            raise SearchError("n_mutations and n_crossovers must be >= 0")
        for name in ("p_layer", "p_global"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise SearchError(f"{name} must be a probability in [0, 1], got {p}")


class Proposer:
    """Draws in-budget, unseen candidates of ``space`` for one generation slot."""

    def __init__(self, space: SearchSpace, budget: tuple[int, int], cfg: EvolutionConfig) -> None:
        self.space = space
        self.budget = (int(budget[0]), int(budget[1]))
        self.cfg = cfg
        #: candidates rejected for their size since creation (diagnostics and tests)
        self.n_rejected = 0

    def in_budget(self, candidate: Candidate) -> bool:
        """Whether the total parameter count lies inside the window."""
        n = self.space.count_params(candidate)["total"]
        return self.budget[0] <= n <= self.budget[1]

    def _ok(self, cand: Candidate, taken: Callable[[str], bool]) -> bool:
        if taken(self.space.key(cand)):
            return False
        if not self.in_budget(cand):
            self.n_rejected += 1
            return False
        return True

    def random(self, rng: random.Random, taken: Callable[[str], bool]) -> Candidate:
        """A uniformly random in-budget candidate nobody has taken yet."""
        for _ in range(self.cfg.max_random_tries):
            cand = self.space.sample(rng)
            if self._ok(cand, taken):
                return cand
        lo, hi = self.space.param_range()
        raise SearchError(
            f"no unseen candidate with {self.budget[0]:,}..{self.budget[1]:,} parameters after "
            f"{self.cfg.max_random_tries} random draws (space '{self.space.name}' spans "
            f"{lo:,}..{hi:,}); widen the budget window or the space is exhausted")

    def mutation(self, parents: Sequence[Candidate], rng: random.Random,
                 taken: Callable[[str], bool]) -> Candidate | None:
        """A mutated copy of a random parent, or None after ``max_child_tries``."""
        for _ in range(self.cfg.max_child_tries):
            child = self.space.mutate(rng.choice(parents), rng, p_layer=self.cfg.p_layer,
                                      p_global=self.cfg.p_global)
            if self._ok(child, taken):
                return child
        return None

    def crossover(self, parents: Sequence[Candidate], rng: random.Random,
                  taken: Callable[[str], bool]) -> Candidate | None:
        """A child of two random parents that may be crossed (same depth), or None."""
        pairs = [(a, b) for i, a in enumerate(parents) for b in parents[i + 1:]
                 if self.space.can_crossover(a, b)]
        if not pairs:
            return None
        for _ in range(self.cfg.max_child_tries):
            a, b = rng.choice(pairs)
            child = self.space.crossover(a, b, rng)
            if self._ok(child, taken):
                return child
        return None

    def propose(self, parents: Sequence[Candidate], slot: int, rng: random.Random,
                taken: Callable[[str], bool]) -> tuple[Candidate, str]:
        """The candidate for ``slot`` of a generation and how it was made.

        Without parents (generation 0) it is random; otherwise the first ``n_mutations`` slots
        mutate, the next ``n_crossovers`` cross over, later slots (extra trials after failures or
        with several workers) pick one of the two in proportion. A child that cannot be made
        in budget falls back to a random candidate.
        """
        if not parents:
            return self.random(rng, taken), "random"
        m, c = self.cfg.n_mutations, self.cfg.n_crossovers
        if slot < m:
            kind = "mutation"
        elif slot < m + c:
            kind = "crossover"
        elif m + c == 0:
            kind = "random"
        else:
            kind = "mutation" if rng.random() < m / (m + c) else "crossover"
        child = None
        if kind == "crossover":
            child = self.crossover(parents, rng, taken)
            if child is None:
                kind = "mutation"
        if kind == "mutation":
            child = self.mutation(parents, rng, taken)
        if child is None:
            return self.random(rng, taken), "random"
        return child, kind
