"""From a search config (mmengine ``Config`` or a plain dict) to a ready ``EvolutionSearch``.

A config holds::

    space = dict(type="toy_layered", ...)          # required, automtl.registry.SPACES
    evaluator = dict(type="toy", ...)              # required, automtl.registry.EVALUATORS
    fitness = dict(type="t_score")                 # optional (t_score | weighted_sum | delta_m)
    search = dict(budget=(min, max),               # required: EvolutionSettings
                  mode="evolution", generations=20, population=50, top_k=10,
                  n_mutations=25, n_crossovers=25, p_layer=0.2, p_global=0.4)
    storage = None      # optional optuna URL; default: SQLite in the work dir
    study = "name"      # optional; default: the config's file stem
    seed = 0            # optional
    work_dir = "..."    # optional; default: work_dirs/<config stem>
    tensorboard = True  # optional; per-trial scalars in <work_dir>/tb

Unknown top-level keys and unknown or badly typed ``search`` settings are
:class:`~automtl.errors.ConfigError` naming the dotted key.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automtl.config import check_top_level, plain
from automtl.errors import ConfigError
from automtl.registry import EVALUATORS, SPACES, build
from automtl.search.fitness import build_fitness
from automtl.search.runner import EvolutionSearch
from automtl.search.settings import EvolutionSettings
from automtl.search.tracking import attach_log

__all__ = ["REQUIRED", "TOP_LEVEL", "SearchJob", "build_job"]

#: the top-level keys of a search config (plus automtl.config.COMMON_KEYS)
TOP_LEVEL = ("space", "evaluator", "fitness", "search", "storage", "study", "seed", "work_dir",
             "tensorboard")
REQUIRED = ("space", "evaluator", "search")


@dataclass
class SearchJob:
    """A search built from a config, with what the ``search`` command needs to run it."""

    search: EvolutionSearch
    work_dir: Path
    study_name: str
    seed: int | None


def _option(cfg: Mapping[str, Any], key: str, kinds: tuple[type, ...], path: str | None) -> Any:
    """Top-level ``key`` of ``cfg`` (None when absent), :class:`ConfigError` if not a ``kinds``."""
    value = cfg.get(key)
    wrong_kind = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    if value is not None and wrong_kind:
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"must be {names} or None", key=key, path=path, value=value)
    return value


def build_job(cfg: Mapping[str, Any], *, config_path: str | None = None,
              storage: str | None = None, study: str | None = None, resume: bool = False,
              seed: int | None = None, work_dir: str | None = None, progress: bool = True,
              tensorboard: bool | None = None) -> SearchJob:
    """Build the search a config describes; command-line values override the config's."""
    cfg = plain(cfg)
    check_top_level(cfg, TOP_LEVEL, path=config_path, required=REQUIRED)
    stem = Path(config_path).stem if config_path else "search"
    settings = EvolutionSettings.parse(cfg["search"], path=config_path)
    seed = seed if seed is not None else _option(cfg, "seed", (int,), config_path)
    work = Path(work_dir or _option(cfg, "work_dir", (str,), config_path) or f"work_dirs/{stem}")
    study_name = study or _option(cfg, "study", (str,), config_path) or stem
    storage = storage if storage is not None else _option(cfg, "storage", (str,), config_path)
    if tensorboard is None:
        board = _option(cfg, "tensorboard", (bool,), config_path)
        tensorboard = True if board is None else board
    space = build(SPACES, cfg["space"], key="space")
    work.mkdir(parents=True, exist_ok=True)
    attach_log(work)  # supernet training inside the evaluator builder logs there too
    evaluator = build(EVALUATORS, cfg["evaluator"], space, key="evaluator", work_dir=work,
                      seed=seed)
    fitness = build_fitness(cfg.get("fitness"))
    search = EvolutionSearch(space, evaluator, settings, fitness=fitness, storage=storage,
                             study_name=study_name, resume=resume, work_dir=work, seed=seed,
                             progress=progress, tensorboard=tensorboard)
    return SearchJob(search, work, study_name, seed)
