"""Evaluators: ``evaluate(candidate) -> {task: score}``, all the search asks of a space's model.

:class:`ToyEvaluator` scores the toy space exactly; :class:`~automtl.search.supernet_evaluator.
SupernetEvaluator` runs the candidate with inherited supernet weights. Both are registered
in :data:`automtl.registry.EVALUATORS` (``toy``, ``supernet``) and built from a config's
``evaluator = dict(type=…)`` with the space as first argument.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from automtl.errors import ConfigError
from automtl.registry import EVALUATORS, check_keys
from automtl.spaces.base import Candidate, SearchSpace
from automtl.spaces.toy import LayeredToySpace


def _seconds(value: Any, *, key: str) -> float:
    """``value`` as a finite number of seconds >= 0, or :class:`ConfigError` at ``key``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ConfigError("must be a finite number of seconds >= 0", key=key, value=value)
    return float(value)


class Evaluator(ABC):
    """Scores candidates; one ``evaluate`` call per candidate, never twice for one arch."""

    #: tasks ``evaluate`` reports
    tasks: tuple[str, ...] = ()
    #: per task, whether a larger score is better (default: all higher-is-better)
    higher_is_better: Mapping[str, bool] = {}

    @abstractmethod
    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        """Per-task scores of ``candidate``."""

    def direction(self, task: str) -> bool:
        """True when a higher score of ``task`` is better."""
        return bool(self.higher_is_better.get(task, True))


class ToyEvaluator(Evaluator):
    """Scores a :class:`LayeredToySpace` candidate exactly; ``delay`` seconds of sleep stand in
    for the cost of a real evaluation (used by tests that kill a search mid-generation)."""

    def __init__(self, space: SearchSpace, *, delay: float = 0.0) -> None:
        if not isinstance(space, LayeredToySpace):
            raise ConfigError("the 'toy' evaluator only scores the 'toy_layered' space",
                              key="evaluator.type")
        self.space = space
        self.tasks = space.tasks
        self.delay = _seconds(delay, key="delay")

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        """Exact scores, after the optional delay."""
        if self.delay:
            time.sleep(self.delay)
        return self.space.scores(candidate)


EVALUATORS.register_module("toy", module=ToyEvaluator)


@EVALUATORS.register_module("supernet")
def supernet_evaluator(space: SearchSpace, **kwargs: Any) -> Evaluator:
    """:func:`~automtl.search.supernet_evaluator.build_supernet_evaluator` (imports torch when
    called; see it for the accepted settings)."""
    from automtl.search.supernet_evaluator import build_supernet_evaluator

    check_keys(build_supernet_evaluator, kwargs, key="evaluator", skip=("work_dir", "seed"))
    return build_supernet_evaluator(space, **kwargs)
