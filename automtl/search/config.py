"""From a search config (mmengine ``Config`` or a plain dict) to a ready ``EvolutionSearch``.

A config holds::

    space = dict(type="toy_layered", ...)          # required
    evaluator = dict(type="toy", ...)              # required
    fitness = dict(type="t_score")                 # optional (t_score | weighted_sum | delta_m)
    search = dict(budget=(min, max),               # required
                  mode="evolution", generations=20, population=50, top_k=10,
                  n_mutations=25, n_crossovers=25, p_layer=0.2, p_global=0.4)
    storage = None      # optional optuna URL; default: SQLite in the work dir
    study = "name"      # optional; default: the config's file stem
    seed = 0            # optional
    work_dir = "..."    # optional; default: work_dirs/<config stem>
    tensorboard = True  # optional; per-trial scalars in <work_dir>/tb
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from automtl.errors import ConfigError
from automtl.search.evaluate import build_fitness
from automtl.search.registry import build_evaluator, build_space
from automtl.search.runner import MODES, EvolutionSearch, attach_log

_SEARCH_KEYS = {"budget", "mode", "generations", "population", "top_k", "n_mutations",
                "n_crossovers", "p_layer", "p_global", "record_params", "stale_after_s",
                "max_consecutive_failures"}


@dataclass
class SearchJob:
    """A search built from a config, with what ``tools/search.py`` needs to run it."""

    search: EvolutionSearch
    n_generations: int
    work_dir: Path
    study_name: str
    storage: Any
    seed: int | None


def load_config(path: str | os.PathLike[str]) -> Any:
    """An mmengine ``Config`` from ``path`` (:class:`ConfigError` if it cannot be read)."""
    from mmengine.config import Config

    if not Path(path).is_file():
        raise ConfigError("config file not found", path=str(path))
    try:
        return Config.fromfile(str(path))
    except Exception as exc:  # syntax errors, bad imports inside the config
        raise ConfigError(f"cannot load config: {type(exc).__name__}: {exc}",
                          path=str(path)) from exc


def _require(cfg: Mapping[str, Any], key: str, where: str | None) -> Any:
    if key not in cfg or cfg[key] is None:
        raise ConfigError("missing key", key=key, path=where)
    return cfg[key]


def _plain(obj: Any) -> Any:
    """mmengine ConfigDict → dict, recursively (tuples stay tuples)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def build_job(cfg: Mapping[str, Any], *, config_path: str | None = None,
              storage: str | None = None, study: str | None = None, resume: bool = False,
              seed: int | None = None, work_dir: str | None = None, progress: bool = True,
              tensorboard: bool | None = None) -> SearchJob:
    """Build the search a config describes; command-line values override the config's."""
    cfg = _plain(dict(cfg))
    stem = Path(config_path).stem if config_path else "search"
    space_cfg = _require(cfg, "space", config_path)
    eval_cfg = _require(cfg, "evaluator", config_path)
    s = _require(cfg, "search", config_path)
    if not isinstance(s, Mapping):
        raise ConfigError(f"must be a dict, got {type(s).__name__}", key="search",
                          path=config_path)
    if "budget" not in s:
        raise ConfigError("missing key", key="search.budget", path=config_path)
    unknown = sorted(set(s) - _SEARCH_KEYS)
    if unknown:
        raise ConfigError(f"unknown setting; known: {sorted(_SEARCH_KEYS)}",
                          key=f"search.{unknown[0]}", path=config_path)
    mode = s.get("mode", "evolution")
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; use one of {MODES}", key="search.mode",
                          path=config_path)
    work = Path(work_dir or cfg.get("work_dir") or f"work_dirs/{stem}")
    seed = seed if seed is not None else cfg.get("seed")
    study_name = study or cfg.get("study") or stem
    storage = storage if storage is not None else cfg.get("storage")
    space = build_space(space_cfg)
    work.mkdir(parents=True, exist_ok=True)
    attach_log(work)  # supernet training inside the evaluator builder logs there too
    evaluator = build_evaluator(eval_cfg, space, work_dir=work, seed=seed)
    fitness = build_fitness(cfg.get("fitness"))
    kw = {k: s[k] for k in ("population", "top_k", "n_mutations", "n_crossovers", "p_layer",
                            "p_global", "record_params", "stale_after_s",
                            "max_consecutive_failures") if k in s}
    search = EvolutionSearch(space, evaluator, budget=tuple(s["budget"]), fitness=fitness,
                             mode=mode, storage=storage, study_name=study_name, resume=resume,
                             work_dir=work, seed=seed, progress=progress,
                             tensorboard=bool(cfg.get("tensorboard", True) if tensorboard is None
                                              else tensorboard), **kw)
    return SearchJob(search, int(s.get("generations", 20)), work, study_name, storage, seed)
