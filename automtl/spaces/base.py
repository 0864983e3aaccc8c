"""The search-space protocol: what a search and one-shot supernet training need of a space.

A *candidate* is a plain, JSON-serialisable dict of genes (``{"depth": 12, "num_heads.0": 3,
…}`` or ``{"layer1.conv/segment": "share", …}``). Any space — the ViT-MVT supernet, AutoMTL
policies, a toy problem — implements :class:`SearchSpace`, and the search code treats them
all alike: sample, mutate, cross over, count parameters, validate. A space whose candidates
are subnets of a weight-sharing network implements :class:`SupernetSpace` as well: it builds
that network, activates a candidate in it and runs one task, so supernet training and
inherited-weight evaluation never need to know which space they hold.

This module sits below ``train`` and ``search`` and imports neither (nor optuna, nor torch).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automtl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

Candidate = dict[str, Any]


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an int (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _nonempty_sequence(values: Any, *, key: str) -> list[Any]:
    """``values`` as a list, :class:`ConfigError` at ``key`` unless a non-empty list or tuple."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError("must be a non-empty list or tuple", key=key, value=values)
    return list(values)


def check_int_choices(values: Any, *, key: str, minimum: int = 1,
                      maximum: int | None = None) -> tuple[int, ...]:
    """``values`` as sorted distinct ints in ``[minimum, maximum]`` (a space constructor's gene
    choices), or :class:`ConfigError` at ``key`` naming the first bad one."""
    items = _nonempty_sequence(values, key=key)
    for v in items:
        if not _is_int(v) or v < minimum or (maximum is not None and v > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise ConfigError(f"every choice must be an integer {bound}", key=key, value=v)
    return tuple(sorted(set(items)))


def check_names(values: Any, *, key: str) -> tuple[str, ...]:
    """``values`` as a tuple of distinct non-empty strings (e.g. task names), or
    :class:`ConfigError` at ``key``."""
    items = _nonempty_sequence(values, key=key)
    for v in items:
        if not isinstance(v, str) or not v:
            raise ConfigError("every name must be a non-empty string", key=key, value=v)
    if len(set(items)) != len(items):
        raise ConfigError("names must be distinct", key=key, value=values)
    return tuple(items)


def check_int(value: Any, *, key: str) -> int:
    """``value`` if it is an int (not a bool), else :class:`ConfigError` at ``key``."""
    if not _is_int(value):
        raise ConfigError("must be an integer", key=key, value=value)
    return int(value)


class SearchSpace(ABC):
    """Base class of every searchable space.

    Subclasses define the genes and how parameters are counted; the search only ever calls
    the methods below. ``count_params`` must be exact and cheap (it runs for every sample,
    before any evaluation).
    """

    #: short identifier stored in a study so a study of another space is refused
    name: str = "space"
    #: tasks the candidates serve (``count_params`` reports each one and ``"total"``)
    tasks: tuple[str, ...] = ()

    @abstractmethod
    def sample(self, rng: random.Random) -> Candidate:
        """Draw a uniformly random candidate."""

    @abstractmethod
    def mutate(self, candidate: Candidate, rng: random.Random, *, p_layer: float = 0.2,
               p_global: float = 0.4) -> Candidate:
        """A copy of ``candidate`` with per-layer genes resampled with probability ``p_layer``
        and global genes (depth, width) with probability ``p_global``."""

    @abstractmethod
    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        """A child taking each gene from ``a`` or ``b``; only called when
        :meth:`can_crossover` holds."""

    def can_crossover(self, a: Candidate, b: Candidate) -> bool:
        """Whether ``a`` and ``b`` may be crossed (e.g. same depth). Default: same gene keys."""
        return set(a) == set(b)

    @abstractmethod
    def count_params(self, candidate: Candidate) -> dict[str, int]:
        """Exact parameters: ``{task: n, …, "total": n}`` with shared weights counted once."""

    @abstractmethod
    def validate(self, candidate: Candidate) -> None:
        """Raise :class:`automtl.errors.ArchError` naming the key if ``candidate`` is outside
        the space."""

    @abstractmethod
    def param_range(self) -> tuple[int, int]:
        """The smallest and largest possible ``"total"`` over the whole space (exact)."""

    @abstractmethod
    def largest(self) -> Candidate:
        """The candidate with the most parameters (the top of sandwich sampling)."""

    @abstractmethod
    def smallest(self) -> Candidate:
        """The candidate with the fewest parameters (the bottom of sandwich sampling)."""

    def gene_choices(self) -> Mapping[str, Sequence[Any]]:
        """Every gene a candidate may hold with its allowed values (for reports, dashboards).
        Spaces with variable-length candidates list the genes of the largest one."""
        return {}

    def key(self, candidate: Candidate) -> str:
        """A canonical hash: equal candidates (after :meth:`canonical`) share one key."""
        text = json.dumps(self.canonical(candidate), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()

    def canonical(self, candidate: Candidate) -> Candidate:
        """The normal form of a candidate (drop genes that have no effect, sort keys)."""
        return dict(sorted(candidate.items()))

    #: file name of the best candidate written by a search (``save`` decides the format)
    best_filename: str = "best.json"

    def save(self, candidate: Candidate, path: str | os.PathLike[str]) -> Path:
        """Write ``candidate`` to ``path`` (JSON by default; spaces with their own format
        override). Written atomically so a killed search never leaves half a file."""
        from automtl.io import atomic_write_text

        text = json.dumps(self.canonical(candidate), indent=2, sort_keys=True) + "\n"
        return atomic_write_text(path, text)

    def signature(self) -> str:
        """A hash of what defines the space (name, tasks, genes, size range): a study records it
        so that resuming with a different space is refused."""
        desc = {"name": self.name, "tasks": list(self.tasks),
                "genes": {k: list(v) for k, v in sorted(self.gene_choices().items())},
                "range": list(self.param_range())}
        return hashlib.sha1(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


class SupernetSpace(SearchSpace):
    """A space whose candidates are subnets of one weight-sharing network (a supernet).

    One-shot supernet training (:func:`automtl.train.train_supernet`) and inherited-weight
    evaluation (:class:`automtl.search.SupernetEvaluator`) call only these methods, so a new
    space plugs into both by implementing them and registering in
    :data:`automtl.registry.SPACES`.
    """

    @abstractmethod
    def build_supernet(self, **kwargs: Any) -> nn.Module:
        """The weight-sharing network of this space (``kwargs``: the config's ``supernet``)."""

    @abstractmethod
    def activate(self, net: nn.Module, candidate: Candidate) -> None:
        """Put ``net`` in ``candidate``'s configuration (later forwards run that subnet)."""

    @abstractmethod
    def forward(self, net: nn.Module, x: torch.Tensor, task: str) -> torch.Tensor:
        """The output of ``task`` for the input batch ``x`` under the active candidate."""
