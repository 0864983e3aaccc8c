"""Joint-task evolutionary architecture search under a parameter budget (optuna).

CONFIG is a search config (mmengine ``.py``: ``space``, ``evaluator``, ``search``, optional
``fitness``, ``storage``, ``study``, ``seed``, ``work_dir``, ``tensorboard``). Outputs go to the
work dir: the best candidate, ``trials.csv``, ``result.json``, ``search.json``, ``search.png``,
``search.log``, the resolved ``config.py`` and (unless ``--no-tensorboard``) ``tb/``. One search
per work dir: a second one while the first runs exits with status 2 naming the holder (workers
of the same ``--storage``/``--study`` join with their own ``--work-dir`` and ``--resume``).

Examples:
  python -m automtl search configs/search/toy_exact.py
  python -m automtl search configs/search/toy_synthetic.py --workers 2 --storage journal:work_dirs/s.log
  python -m automtl search CONFIG --study mystudy --resume          # continue a killed search
  python -m automtl search CONFIG --cfg-options search.generations=3 seed=1
"""
from __future__ import annotations

import argparse
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m automtl search``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="search config (.py, mmengine format), e.g. "
                        "configs/search/toy_exact.py")
    parser.add_argument("--storage", help="optuna storage: sqlite:///f.db, postgresql://..., "
                        "journal:PATH or PATH.log (default: SQLite search.db in the work dir)")
    parser.add_argument("--study", help="study name (default: config 'study' or the config "
                        "file stem)")
    parser.add_argument("--resume", action="store_true", help="continue an existing study "
                        "(finished trials are kept, interrupted ones re-evaluated)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this "
                        "machine sharing the study (default 1; > 1 needs a storage other "
                        "processes can open; helpers stop when this process dies)")
    parser.add_argument("--seed", type=int, help="random seed (default: config 'seed')")
    parser.add_argument("--work-dir", help="output directory (default: config 'work_dir' or "
                        "work_dirs/<config stem>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-tensorboard", action="store_true", help="no tensorboard log "
                        "(default: <work-dir>/tb unless the config says tensorboard=False)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config settings, e.g. search.generations=3 seed=1")


def _summary(result: Any) -> str:
    """The lines printed after a search: counts, the best candidate, the output files."""
    best = result.best_params.get("total")
    lines = [f"{result.n_complete} candidates evaluated, {result.n_failed} failed; best fitness "
             f"{result.best_fitness} with {best:,} params" if best is not None
             else "no candidate completed"]
    lines += [f"  {name}: {path}" for name, path in sorted(result.outputs.items())]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the search of ``args.config`` (with helper workers) holding its work dir; 1 on a
    typed error, 2 on a bad command line or a work dir another run holds (message on stderr)."""
    import optuna

    from automtl.errors import AutoMTLError, WorkDirBusyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        result, codes = _search(args)
    except WorkDirBusyError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except AutoMTLError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if any(codes):
        print(f"warning: worker exit codes {codes}", file=sys.stderr)
    print(_summary(result))
    return 0


def _search(args: argparse.Namespace) -> tuple[Any, list[int]]:
    """Lock the work dir, build the search, run it with its helpers and write the outputs;
    the result and the helpers' exit codes. Only this process locks the work dir: helpers and
    workers of other work dirs share the study, never the output folder."""
    from automtl.config import dump_config, load_config, parse_cfg_options
    from automtl.search.config import build_job, check_job, make_work_dir, work_dir_of
    from automtl.search.workers import Workers
    from automtl.workdir import lock_work_dir

    overrides = parse_cfg_options(args.cfg_options)
    cfg = load_config(args.config, overrides)
    check_job(cfg, config_path=args.config)  # a bad config creates no work dir
    work = make_work_dir(work_dir_of(cfg, config_path=args.config, work_dir=args.work_dir),
                         path=args.config)
    with lock_work_dir(work, purpose="search"):
        job = build_job(cfg, config_path=args.config, storage=args.storage, study=args.study,
                        resume=args.resume, seed=args.seed, work_dir=str(work),
                        progress=not args.no_progress,
                        tensorboard=False if args.no_tensorboard else None)
        search = job.search
        try:
            # the resolved config: command-line values folded in
            cfg.merge_from_dict(dict(seed=job.seed, study=job.study_name, work_dir=str(work),
                                     storage=search.storage_url))
            dump_config(cfg, work / "config.py")
            helpers = Workers.for_search(args.workers - 1, config=args.config,
                                         cfg_options=overrides, study=job.study_name,
                                         storage=search.storage_url, work_dir=str(work),
                                         seed=job.seed)
            with helpers:
                search.run(write=False)
                codes = helpers.wait()
            return search.write_outputs(), codes
        finally:
            search.close()
