"""Candidate proposal under a parameter budget: random, mutation, crossover (AutoFormer).

Children outside ``[min_params, max_params]`` or already taken (seen in the study) are
resampled — never penalised and never evaluated.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from random import Random

from automtl.errors import SearchError
from automtl.search.settings import EvolutionSettings
from automtl.spaces.base import Candidate, SearchSpace


class Proposer:
    """Draws in-budget, unseen candidates of ``space`` for one generation slot, as the
    settings say (budget window, operators, probabilities, tries)."""

    def __init__(self, space: SearchSpace, settings: EvolutionSettings) -> None:
        self.space = space
        self.budget = settings.budget
        self.settings = settings
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

    def random(self, rng: Random, taken: Callable[[str], bool]) -> Candidate:
        """A uniformly random in-budget candidate nobody has taken yet."""
        for _ in range(self.settings.max_random_tries):
            cand = self.space.sample(rng)
            if self._ok(cand, taken):
                return cand
        lo, hi = self.space.param_range()
        raise SearchError(
            f"no unseen candidate with {self.budget[0]:,}..{self.budget[1]:,} parameters after "
            f"{self.settings.max_random_tries} random draws (space '{self.space.name}' spans "
            f"{lo:,}..{hi:,}); widen the budget window or the space is exhausted")

    def mutation(self, parents: Sequence[Candidate], rng: Random,
                 taken: Callable[[str], bool]) -> Candidate | None:
        """A mutated copy of a random parent, or None after ``max_child_tries``."""
        for _ in range(self.settings.max_child_tries):
            child = self.space.mutate(rng.choice(parents), rng, p_layer=self.settings.p_layer,
                                      p_global=self.settings.p_global)
            if self._ok(child, taken):
                return child
        return None

    def crossover(self, parents: Sequence[Candidate], rng: Random,
                  taken: Callable[[str], bool]) -> Candidate | None:
        """A child of two random parents that may be crossed (same depth), or None."""
        pairs = [(a, b) for i, a in enumerate(parents) for b in parents[i + 1:]
                 if self.space.can_crossover(a, b)]
        if not pairs:
            return None
        for _ in range(self.settings.max_child_tries):
            a, b = rng.choice(pairs)
            child = self.space.crossover(a, b, rng)
            if self._ok(child, taken):
                return child
        return None

    def propose(self, parents: Sequence[Candidate], slot: int, rng: Random,
                taken: Callable[[str], bool]) -> tuple[Candidate, str]:
        """The candidate for ``slot`` of a generation and how it was made.

        Without parents (generation 0) it is random; otherwise the first ``n_mutations`` slots
        mutate, the next ``n_crossovers`` cross over, later slots (extra trials after failures or
        with several workers) pick one of the two in proportion. A child that cannot be made
        in budget falls back to a random candidate.
        """
        if not parents:
            return self.random(rng, taken), "random"
        m, c = self.settings.n_mutations, self.settings.n_crossovers
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
