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

Unknown top-level keys, badly typed top-level values (checked even where the command line
overrides them) and unknown or badly typed ``search`` settings are
:class:`~automtl.errors.ConfigError` naming the dotted key; so is a ``work_dir`` that is a file.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automtl.config import check_top_level, plain
from automtl.errors import ConfigError
from automtl.registry import EVALUATORS, SPACES, build
from automtl.search.fitness import build_fitness
from automtl.search.runner import EvolutionSearch
from automtl.search.settings import EvolutionSettings, check_seed
from automtl.search.tracking import LOG, attach_log, detach_log

__all__ = ["REQUIRED", "TOP_LEVEL", "SearchJob", "build_job", "check_job", "make_work_dir",
           "work_dir_of"]

#: the top-level keys of a search config (plus automtl.config.COMMON_KEYS)
TOP_LEVEL = ("space", "evaluator", "fitness", "search", "storage", "study", "seed", "work_dir",
             "tensorboard")
REQUIRED = ("space", "evaluator", "search")
#: the kinds of the optional top-level values (None always allowed)
OPTIONS: dict[str, tuple[type, ...]] = {"seed": (int,), "work_dir": (str,), "study": (str,),
                                        "storage": (str,), "tensorboard": (bool,)}


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


def _options(cfg: Mapping[str, Any], path: str | None) -> dict[str, Any]:
    """Every optional top-level value, type-checked (even where the command line overrides it)."""
    return {key: _option(cfg, key, kinds, path) for key, kinds in OPTIONS.items()}


def check_job(cfg: Mapping[str, Any], *, config_path: str | None = None
              ) -> tuple[EvolutionSettings, dict[str, Any]]:
    """The cheap checks of a search config, before anything is built or created: top-level
    keys, the ``search`` settings and the optional top-level values (returned)."""
    cfg = plain(cfg)
    check_top_level(cfg, TOP_LEVEL, path=config_path, required=REQUIRED)
    settings = EvolutionSettings.parse(cfg["search"], path=config_path)
    opts = _options(cfg, config_path)
    check_seed(opts["seed"], path=config_path)
    return settings, opts


def work_dir_of(cfg: Mapping[str, Any], *, config_path: str | None = None,
                work_dir: str | None = None) -> Path:
    """The work dir of a search config: ``work_dir`` (the command line), else the config's,
    else ``work_dirs/<config stem>``."""
    stem = Path(config_path).stem if config_path else "search"
    return Path(work_dir or _option(plain(cfg), "work_dir", (str,), config_path)
                or f"work_dirs/{stem}")


def make_work_dir(work: Path, *, path: str | None = None) -> Path:
    """Create ``work`` (and its parents); :class:`ConfigError` at ``work_dir`` naming it when it
    is a file or cannot be created."""
    if work.exists() and not work.is_dir():
        raise ConfigError(f"work dir {work} exists and is not a folder", key="work_dir",
                          path=path)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:  # a parent that is a file, no permission, a NUL byte
        raise ConfigError(f"cannot create work dir {work}: {exc}", key="work_dir",
                          path=path) from None
    return work


@contextmanager
def _naming_file(path: str | None) -> Iterator[None]:
    """Add the config file ``path`` to a :class:`ConfigError` raised inside that names none
    (the registry's builders know the dotted key, not the file)."""
    try:
        yield
    except ConfigError as exc:
        if exc.path is None:
            exc.path = path
        raise


@contextmanager
def _log_while_building(work: Path) -> Iterator[None]:
    """Send the search log to ``work``; take a handler attached here off again if building
    fails (a successful build hands it to the search, whose ``close`` detaches it)."""
    before = list(LOG.handlers)
    handler = attach_log(work)
    try:
        yield
    except BaseException:
        if handler not in before:
            detach_log(handler)
        raise


def build_job(cfg: Mapping[str, Any], *, config_path: str | None = None,
              storage: str | None = None, study: str | None = None, resume: bool = False,
              seed: int | None = None, work_dir: str | None = None, progress: bool = True,
              tensorboard: bool | None = None) -> SearchJob:
    """Build the search a config describes; command-line values override the config's (whose
    own values are checked all the same)."""
    cfg = plain(cfg)
    settings, opts = check_job(cfg, config_path=config_path)
    seed = check_seed(seed if seed is not None else opts["seed"], path=config_path)
    study_name = study or opts["study"] or (Path(config_path).stem if config_path else "search")
    storage = storage if storage is not None else opts["storage"]
    tensorboard = tensorboard if tensorboard is not None else opts["tensorboard"] is not False
    with _naming_file(config_path):
        space = build(SPACES, cfg["space"], key="space")
    work = make_work_dir(work_dir_of(cfg, config_path=config_path, work_dir=work_dir),
                         path=config_path)
    with _log_while_building(work), _naming_file(config_path):
        # supernet training inside the evaluator builder logs to the work dir too
        evaluator = build(EVALUATORS, cfg["evaluator"], space, key="evaluator", work_dir=work,
                          seed=seed)
        fitness = build_fitness(cfg.get("fitness"))
        search = EvolutionSearch(space, evaluator, settings, fitness=fitness, storage=storage,
                                 study_name=study_name, resume=resume, work_dir=work, seed=seed,
                                 progress=progress, tensorboard=tensorboard)
    return SearchJob(search, work, study_name, seed)
