"""The one evolution-settings object: a config's ``search = dict(...)`` section, typed.

:class:`EvolutionSettings` is validated once and then passed whole to
:class:`~automtl.search.EvolutionSearch`, its sampler and the proposer, so every setting has
one name, one default and one check. A config section (or any mapping) goes through
:meth:`EvolutionSettings.parse` (:func:`automtl.config.validate` with ``key="search"``): a bad
value is a :class:`~automtl.errors.ConfigError` naming ``search.<key>``, the value and what is
expected (``population='20'``, ``generations=2.5``, ``top_k`` above ``population``, a
``budget`` that is not a ``(min_params, max_params)`` pair). Built directly in Python, the same
checks raise pydantic's ``ValidationError``.

Example::

    from automtl.search import EvolutionSettings
    settings = EvolutionSettings(budget=(20_000, 40_000), population=10, top_k=3,
                                 n_mutations=5, n_crossovers=5)
    settings.replace(mode="random").mode
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from automtl.errors import ConfigError, SearchError

if TYPE_CHECKING:
    from automtl.spaces.base import SearchSpace

__all__ = ["MODES", "SEED_LIMIT", "EvolutionSettings", "check_budget", "check_seed"]

#: how candidates are proposed: AutoFormer evolution, NSGA-II (one objective per task plus
#: the parameter count), or in-budget random search (the baseline)
MODES = ("evolution", "pareto", "random")

#: seeds are 0 <= seed < SEED_LIMIT (optuna's samplers seed numpy with them)
SEED_LIMIT = 2**32

NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosInt = Annotated[int, Field(strict=True, ge=1)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]


class EvolutionSettings(BaseModel):
    """``search = dict(...)``: the budget, the mode, the evolution and the run's stop rules.

    ``budget`` is ``(min_params, max_params)`` of the multi-task total (shared weights counted
    once). ``generations``: the search stops once the study holds ``population × generations``
    completed trials, counted across every worker. Generation 0 is ``population`` random
    candidates; later ones are ``n_mutations`` mutations (per-layer gene probability
    ``p_layer``, depth/width ``p_global``) and ``n_crossovers`` crossovers of the ``top_k``
    best (unused in ``pareto`` mode, where NSGA-II keeps ``population`` survivors).
    ``record_params`` also stores the genes as optuna params (``None``: for small spaces only).
    ``stale_after_s``: RUNNING trials of workers on other hosts older than this are orphans
    (``None``: only dead processes on this host are detected). ``max_consecutive_failures``
    failed evaluations in a row stop the search (a broken evaluator, not a bad candidate).
    ``max_child_tries`` / ``max_random_tries``: draws before a child falls back to a random
    candidate / before the window is declared exhausted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: tuple[NonNegInt, NonNegInt]
    mode: Literal["evolution", "pareto", "random"] = "evolution"
    generations: PosInt = 20
    population: Annotated[int, Field(strict=True, ge=2)] = 50
    top_k: PosInt = 10
    n_mutations: NonNegInt = 25
    n_crossovers: NonNegInt = 25
    p_layer: Probability = 0.2
    p_global: Probability = 0.4
    record_params: Optional[Annotated[bool, Field(strict=True)]] = None
    stale_after_s: Optional[Annotated[float, Field(strict=True, gt=0)]] = None
    max_consecutive_failures: PosInt = 20
    max_child_tries: PosInt = 50
    max_random_tries: PosInt = 5000

    @classmethod
    def parse(cls, value: EvolutionSettings | Mapping[str, Any] | None, *,
              path: str | None = None) -> EvolutionSettings:
        """``value`` as settings: a settings object as it is, a mapping (a config's ``search``
        section) validated, every problem a :class:`ConfigError` at ``search.<key>``."""
        if isinstance(value, cls):
            return value
        from automtl.config import validate

        return validate(cls, value, key="search", path=path)

    @field_validator("budget", mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError("budget must be (min_params, max_params), a pair of ints")
        return tuple(value)

    @field_validator("budget")
    @classmethod
    def _window(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"budget window is empty: min_params {value[0]:,} > "
                             f"max_params {value[1]:,}")
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int, info: ValidationInfo) -> int:
        population = info.data.get("population")
        if population is not None and value > population:
            raise ValueError(f"top_k ({value}) must not exceed population ({population})")
        return value

    def replace(self, **changes: Any) -> EvolutionSettings:
        """A copy with ``changes`` applied, validated again."""
        return type(self)(**{**self.model_dump(), **changes})

    def target_trials(self, generations: int | None = None) -> int:
        """Completed trials that ``generations`` (default: the setting) generations make."""
        return self.population * (self.generations if generations is None else generations)


def check_budget(space: SearchSpace, budget: Any) -> tuple[int, int]:
    """``budget`` as ``(min, max)`` ints, or :class:`SearchError` if it is malformed or no
    architecture of ``space`` can satisfy it (naming the smallest and largest sizes)."""
    try:
        lo, hi = (int(budget[0]), int(budget[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise SearchError(f"budget must be (min_params, max_params), got {budget!r}") from exc
    if lo > hi:
        raise SearchError(f"budget window is empty: min_params {lo:,} > max_params {hi:,}")
    small, large = space.param_range()
    if hi < small or lo > large:
        raise SearchError(
            f"no architecture of space '{space.name}' has {lo:,}..{hi:,} parameters: the "
            f"smallest has {small:,} and the largest {large:,}")
    return lo, hi


def check_seed(seed: Any, *, path: str | None = None) -> int | None:
    """``seed`` if it is None or an int in ``0..2**32-1`` (what optuna's samplers take), else
    :class:`ConfigError` at ``seed``."""
    bad = seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                                or not 0 <= seed < SEED_LIMIT)
    if bad:
        raise ConfigError(f"must be None or an integer in 0..{SEED_LIMIT - 1}", key="seed",
                          path=path, value=seed)
    return seed
