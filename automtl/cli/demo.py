"""Run the demo: single-task baselines, hard sharing and AutoMTL on synthetic scenes, one table.

About 10 minutes on 2 CPU cores. Writes, under --work-dir: the table (table.txt), the sampled
policy and its picture (automtl/policy.json, automtl/policy.png), training curves (curves.png),
all numbers (comparison.json), the single-task baseline file and each run's logs/checkpoints.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m automtl demo``."""
    parser.add_argument("--work-dir", default="work_dirs/demo", help="output folder (default: work_dirs/demo)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long run of every step (smoke test)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every iteration count (e.g. 3 for a longer, better-converged run)")
    parser.add_argument("--matched", action="store_true",
                        help="also train hard sharing for as many weight-update steps as AutoMTL takes")
    parser.add_argument("--seed", type=int, default=0, help="data, initialisation and sampling seed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: these small convolutions gain little from more, "
                             "and lose a lot when other processes share the cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the comparison and print its table; returns the exit status."""
    import torch

    from automtl.cli.compare import QUICK, CompareSettings, format_table, run_comparison, table_rows
    from automtl.errors import AutoMTLError
    from automtl.io import atomic_write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else CompareSettings()
    settings = dataclasses.replace(settings, seed=args.seed, matched_hard_sharing=args.matched)
    if args.scale != 1.0:
        settings = settings.scaled(args.scale)
    t0 = time.time()
    try:
        comp = run_comparison(settings, args.work_dir, progress=not args.no_progress and sys.stderr.isatty(),
                              say=lambda m: print(m, flush=True))
    except AutoMTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header, rows = table_rows(comp)
    table = format_table(header, rows)
    work = Path(args.work_dir)
    single, hard, auto = comp.rows[:3]
    checks = [
        f"AutoMTL Δm {auto.delta_m['delta_m_maninis']:+.2f}% vs hard sharing {hard.delta_m['delta_m_maninis']:+.2f}%"
        f" -> {'OK' if auto.delta_m['delta_m_maninis'] >= hard.delta_m['delta_m_maninis'] else 'MISSED'}"
        " (target: AutoMTL >= hard sharing)",
        f"AutoMTL params {auto.params:,} = {100 * auto.params / comp.single_task_params:.0f}% of single-task "
        f"{comp.single_task_params:,} -> {'OK' if auto.params <= 0.6 * comp.single_task_params else 'MISSED'}"
        " (target: <= 60%)",
    ]
    text = (f"{table}\n\nΔm: Maninis et al. (primary metric per task) vs. the single-task baselines, test split "
            f"({settings.n_test} scenes, {settings.size}x{settings.size}).\n" + "\n".join(checks) + "\n"
            f"policy picture: {comp.policy_picture}\ntraining curves: {comp.curves_picture}\n"
            f"total time: {time.time() - t0:.0f} s on {torch.get_num_threads()} threads\n")
    print()
    print(text)
    atomic_write_text(work / "table.txt", text)
    return 0
