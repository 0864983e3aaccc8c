"""Search: joint-task evolutionary search on optuna over any :class:`~automtl.spaces.SearchSpace`.

Public names: :class:`EvolutionSearch` (the search), :class:`EvolutionSettings` (its
``search = dict(...)`` settings, passed whole), :class:`EvolutionSampler` /
:class:`ParetoEvolutionSampler` / :class:`RandomCandidateSampler` (optuna samplers),
:class:`Evaluator`, :class:`ToyEvaluator`, :class:`SupernetEvaluator` (inherited weights, fixed
validation subset, BN recalibration), :class:`WeightedSum`, :class:`DeltaM`, :func:`t_score`
(fitness), :func:`open_storage`, :class:`SearchResult`, :func:`build_job` (a search from a
config). Spaces, evaluators and fitness functions are built from configs through
:mod:`automtl.registry`; the engine names none of them.

Modules: ``settings`` (the settings object), ``runner`` (the loop), ``study`` (study
identity checks, orphaned trials), ``samplers`` / ``proposer`` (candidates), ``storage/``
(opening storages, the RDB fast path), ``result`` / ``report`` (results, output files),
``tracking`` (log, progress bar, tensorboard), ``config`` (config → search), ``workers``
(helper processes), ``evaluators`` / ``fitness`` / ``supernet_evaluator`` (scoring).

Names resolve lazily, so ``import automtl.search`` does not import optuna or torch until a
name that needs them is used.
"""
from __future__ import annotations

from automtl._lazy import lazy_exports

_EXPORTS = {
    "Evaluator": "automtl.search.evaluators", "ToyEvaluator": "automtl.search.evaluators",
    "SupernetEvaluator": "automtl.search.supernet_evaluator",
    "build_supernet_evaluator": "automtl.search.supernet_evaluator",
    "Fitness": "automtl.search.fitness", "WeightedSum": "automtl.search.fitness",
    "DeltaM": "automtl.search.fitness", "t_score": "automtl.search.fitness",
    "build_fitness": "automtl.search.fitness",
    "EvolutionSearch": "automtl.search.runner",
    "EvolutionSettings": "automtl.search.settings", "MODES": "automtl.search.settings",
    "check_budget": "automtl.search.settings",
    "SearchResult": "automtl.search.result", "TrialRecord": "automtl.search.result",
    "pareto_front": "automtl.search.result",
    "EvolutionSampler": "automtl.search.samplers",
    "ParetoEvolutionSampler": "automtl.search.samplers",
    "RandomCandidateSampler": "automtl.search.samplers",
    "open_storage": "automtl.search.storage",
    "build_job": "automtl.search.config",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
