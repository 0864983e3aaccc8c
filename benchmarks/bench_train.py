"""Trainer benchmarks: the demo comparison (single-task / hard sharing / AutoMTL) and the
Trainer's per-step overhead against a hand-written PyTorch loop, side by side in one run.

    python -m benchmarks.bench_train                 # demo settings (about 5 min on 1 free core)
    python -m benchmarks.bench_train --scale 3       # a longer run (3x the iterations)
    python -m benchmarks.bench_train --quick         # seconds; checks the script
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from benchmarks._report import table, write_section


def overhead(iters: int, rounds: int = 3) -> tuple[float, float]:
    """Seconds per step (best of ``rounds``, alternating): a plain loop vs. Trainer.post_train, same
    model, policy, data and optimiser."""
    import pathlib

    from automtl.supernet import Policy
    from automtl.train.compare import CompareSettings, _loaders, _model, _trainer
    from automtl.train.losses import default_criteria

    s = CompareSettings()
    tasks = list(s.tasks)
    train, val, _ = _loaders(s)
    crit = default_criteria(tasks)

    def plain_loop() -> float:
        model = _model(s, tasks)
        policy = Policy.all(model, "share")
        opt = torch.optim.Adam(list(model.weight_parameters()), lr=s.lr)
        its = {t: iter(train[t]) for t in tasks}
        model.train()
        t0 = time.perf_counter()
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            for t in tasks:
                try:
                    x, y = next(its[t])
                except StopIteration:
                    its[t] = iter(train[t])
                    x, y = next(its[t])
                loss = loss + crit[t](model(x, task=t, stage="fixed", policy=policy), y)
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / iters

    def trainer_loop() -> float:
        model = _model(s, tasks)
        with tempfile.TemporaryDirectory() as work:
            tr = _trainer(s, model, tasks, train, val, pathlib.Path(work), False)
            t0 = time.perf_counter()
            tr.post_train(iters, s.lr, reload=Policy.all(model, "share"))
            took = (time.perf_counter() - t0) / iters
            tr.close()
        return took

    plain, ours = [], []
    for _ in range(rounds):
        plain.append(plain_loop())
        ours.append(trainer_loop())
    return min(plain), min(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default="work_dirs/bench_train")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from automtl.train.compare import (QUICK, CompareSettings, automtl_weight_steps, format_table, run_comparison,
                                       table_rows)

    plain, ours = overhead(5 if args.quick else 40)
    settings = dataclasses.replace(QUICK if args.quick else CompareSettings(), matched_hard_sharing=True)
    if args.scale != 1.0:
        settings = settings.scaled(args.scale)
    comp = run_comparison(settings, args.work_dir, progress=False, say=lambda m: print(m, flush=True))
    header, rows = table_rows(comp)
    print(format_table(header, rows))
    single, hard, auto = comp.rows[:3]
    matched = comp.rows[3]
    s = settings
    body = (
        f"Demo comparison on the synthetic scenes ({', '.join(s.tasks)}; {s.size}x{s.size}, "
        f"{s.n_train} train / {s.n_val} val / {s.n_test} test scenes, batch {s.batch_size}; TinyResNet "
        f"{s.widths} + ConvHead({s.head_channels}); {args.threads} torch thread(s)). Single-task and hard "
        f"sharing: {s.baseline_iters} iterations each; AutoMTL: pre-train {s.pre_iters}, policy-train "
        f"{s.alter_iters} ({s.policy_network_iters[1]} weight / {s.policy_network_iters[0]} policy steps "
        f"per cycle), {s.n_policies} sampled policies filtered to ≤ {s.budget:.0%} of the single-task "
        f"parameters and scored by Δm on the val split, post-train {s.post_iters}. Metrics on the test split; "
        f"Δm = Maninis (primary metric per task) against the single-task rows.\n\n"
        + table(header, rows)
        + f"\n\nTargets: AutoMTL Δm ≥ hard sharing: **{'met' if auto.delta_m['delta_m_maninis'] >= hard.delta_m['delta_m_maninis'] else 'missed'}** "
        f"({auto.delta_m['delta_m_maninis']:+.2f}% vs {hard.delta_m['delta_m_maninis']:+.2f}%); AutoMTL params "
        f"≤ 60% of single-task: **{'met' if auto.params <= 0.6 * comp.single_task_params else 'missed'}** "
        f"({100 * auto.params / comp.single_task_params:.0f}%). Other Δm variants of AutoMTL: "
        + ", ".join(f"{k[8:]} {v:+.2f}%" for k, v in auto.delta_m.items())
        + f". Control: hard sharing trained for AutoMTL's {automtl_weight_steps(s)} weight-update steps "
        f"gets Δm {matched.delta_m['delta_m_maninis']:+.2f}% (AutoMTL "
        f"{'still ahead' if auto.delta_m['delta_m_maninis'] >= matched.delta_m['delta_m_maninis'] else 'behind'})"
        + f". Wall time of the whole comparison: {comp.seconds:.0f} s.\n\n"
        "Trainer overhead (3 tasks, fixed all-share policy, same model/data/Adam):\n\n"
        + table(["loop", "s / step", "ratio"],
                [["hand-written PyTorch loop", f"{plain:.4f}", "1.00"],
                 ["Trainer.post_train (checks, logging, checkpoints)", f"{ours:.4f}", f"{ours / plain:.2f}"]])
    )
    name = "train_demo" if args.scale == 1.0 else "train_demo_long"
    title = "Training: demo comparison" + ("" if args.scale == 1.0 else f" (longer run, {args.scale:g}x iterations)")
    cmd = "python -m benchmarks.bench_train" + ("" if args.scale == 1.0 else f" --scale {args.scale:g}") \
        + (" --quick" if args.quick else "")
    if not args.quick:
        write_section(name, title, body, cmd)
    else:
        print(body)


if __name__ == "__main__":
    main()
