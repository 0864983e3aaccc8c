"""Search: the search-space protocol and joint-task evolutionary search on optuna.

Public names: :class:`SearchSpace` (protocol), :class:`EvolutionSearch` (the search),
:class:`EvolutionSampler` / :class:`ParetoEvolutionSampler` / :class:`RandomCandidateSampler`
(optuna samplers), :class:`Evaluator`, :class:`WeightedSum`, :class:`DeltaM`, :func:`t_score`
(fitness), :func:`open_storage`, the AutoMTL :class:`PolicySearchSpace`, the
:class:`SupernetEvaluator` (inherited weights, fixed validation subset, BN recalibration),
:func:`train_supernet`, and the toy space :class:`LayeredToySpace` with a known optimum.
The ViT-MVT adapter lives in :mod:`automtl.search.vit_space` (imports ``search_spaces``).
"""
from automtl.search.evaluate import DeltaM, Evaluator, Fitness, WeightedSum, build_fitness, t_score
from automtl.search.runner import EvolutionSearch, SearchResult, TrialRecord, check_budget
from automtl.search.samplers import EvolutionSampler, ParetoEvolutionSampler, RandomCandidateSampler
from automtl.search.policy_space import PolicySearchSpace
from automtl.search.space import Candidate, SearchSpace
from automtl.search.storage import open_storage
from automtl.search.supernet_eval import SupernetEvaluator
from automtl.search.supernet_train import train_supernet
from automtl.search.toy import LayeredToySpace, ToyEvaluator

__all__ = [
    "Candidate", "SearchSpace", "EvolutionSearch", "SearchResult", "TrialRecord", "check_budget",
    "EvolutionSampler", "ParetoEvolutionSampler", "RandomCandidateSampler", "Evaluator",
    "Fitness", "WeightedSum", "DeltaM", "t_score", "build_fitness", "open_storage",
    "LayeredToySpace", "ToyEvaluator", "PolicySearchSpace", "SupernetEvaluator", "train_supernet",
]
