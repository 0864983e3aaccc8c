#!/usr/bin/env python
"""Joint-task evolutionary architecture search under a parameter budget (optuna).

Examples:
  python tools/search.py configs/search/toy_exact.py
  python tools/search.py configs/search/toy_synthetic.py --workers 2 --storage journal:work_dirs/s.log
  python tools/search.py CONFIG --study mystudy --resume          # continue a killed search
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config", help="search config (.py, mmengine format), e.g. configs/search/toy_exact.py")
    p.add_argument("--storage", help="optuna storage: sqlite:///f.db, postgresql://..., journal:PATH "
                   "or PATH.log (default: SQLite search.db in the work dir)")
    p.add_argument("--study", help="study name (default: config 'study' or the config file stem)")
    p.add_argument("--resume", action="store_true", help="continue an existing study "
                   "(finished trials are kept, interrupted ones re-evaluated)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--seed", type=int, help="random seed (default: config 'seed')")
    p.add_argument("--work-dir", help="output directory (default: config 'work_dir' or work_dirs/<stem>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="no tensorboard log (default: <work-dir>/tb unless the config says tensorboard=False)")
    p.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)  # a spawned worker
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import optuna

    from automtl.errors import AutoMTLError, SearchError
    from automtl.search.config import build_job, load_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
        job = build_job(cfg, config_path=args.config, storage=args.storage, study=args.study,
                        resume=args.resume or args.helper, seed=args.seed,
                        work_dir=args.work_dir, progress=not (args.no_progress or args.helper),
                        tensorboard=False if (args.no_tensorboard or args.helper) else None)
        if not args.helper:  # the resolved config: command-line values folded in
            cfg.merge_from_dict(dict(seed=job.seed, study=job.study_name, work_dir=str(job.work_dir),
                                     storage=job.search.storage_url))
            cfg.dump(str(job.work_dir / "config.py"))
        helpers = []
        if args.workers > 1 and job.search.storage_url in (None, "memory", ":memory:"):
            raise SearchError("--workers > 1 needs a storage other processes can open "
                              "(the default SQLite file, an RDB URL or a journal file)")
        for i in range(1, args.workers):
            cmd = [sys.executable, __file__, args.config, "--helper", "--study", job.study_name,
                   "--work-dir", str(job.work_dir), "--storage", job.search.storage_url]
            if job.seed is not None:
                cmd += ["--seed", str(job.seed + 1000 * i)]
            helpers.append(subprocess.Popen(cmd))
        try:
            result = job.search.run(job.n_generations, write=False)
        except BaseException:
            for h in helpers:  # never leave our own worker processes behind
                h.terminate()
            raise
        codes = [h.wait() for h in helpers]
        if args.helper:
            return 0
        result = job.search.write_outputs()
        job.search.close()
    except AutoMTLError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if any(codes):
        print(f"warning: worker exit codes {codes}", file=sys.stderr)
    best = result.best_params.get("total")
    print(f"{result.n_complete} candidates evaluated, {result.n_failed} failed; best fitness "
          f"{result.best_fitness} with {best:,} params" if best is not None else "no candidate completed")
    for name, path in sorted(result.outputs.items()):
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
