"""Trainer benchmarks: the demo comparison (single-task / hard sharing / AutoMTL) and the
Trainer's per-step overhead against a hand-written PyTorch loop, side by side in one run.

    python -m benchmarks.bench_train                 # demo settings (about 5 min on 1 free core)
    python -m benchmarks.bench_train --scale 3       # a longer run (3x the iterations)
    python -m benchmarks.bench_train --quick         # seconds; checks the script
    python -m benchmarks.bench_train --report-only [--scale 2]  # rewrite a section from a finished run
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from benchmarks._report import endless_batches, table, write_section


def overhead(iters: int, rounds: int = 3) -> tuple[float, float]:
    """Seconds per step (best of ``rounds``, alternating): a plain loop vs. Trainer.post_train, same
    model, policy, data and optimiser."""
    import pathlib

    from automtl.cli.compare import CompareSettings, _loaders, _model, _trainer
    from automtl.supernet import Policy
    from automtl.train.losses import default_criteria

    s = CompareSettings()
    tasks = list(s.tasks)
    train, val, _ = _loaders(s)
    crit = default_criteria(tasks)

    def plain_loop() -> float:
        model = _model(s, tasks)
        policy = Policy.all(model, "share")
        opt = torch.optim.Adam(list(model.weight_parameters()), lr=s.lr)
        its = endless_batches({t: train[t] for t in tasks})
        model.train()
        t0 = time.perf_counter()
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            for t in tasks:
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


def demo_body(comp, threads: int) -> str:
    """The markdown of a comparison: settings, table, targets, matched-steps control."""
    from automtl.cli.compare import automtl_weight_steps, table_rows

    header, rows = table_rows(comp)
    hard, auto = comp.rows[1], comp.rows[2]
    dm = {r.name: r.delta_m["delta_m_maninis"] for r in comp.rows}
    s = comp.settings
    text = (
        f"Synthetic scenes ({', '.join(s.tasks)}; {s.size}x{s.size}, {s.n_train} train / {s.n_val} val / "
        f"{s.n_test} test scenes, batch {s.batch_size}; TinyResNet {s.widths} + ConvHead({s.head_channels}); "
        f"{threads} torch thread(s), 2 cores shared with other jobs). Single-task and hard sharing: "
        f"{s.baseline_iters} iterations each; AutoMTL: pre-train {s.pre_iters}, policy-train {s.alter_iters} "
        f"({s.policy_network_iters[1]} weight / {s.policy_network_iters[0]} policy steps per cycle, policy lr "
        f"{s.policy_lr}, λ_policy {s.policy_lambda}), {s.n_policies} sampled policies + the argmax policy, "
        f"filtered to ≤ {s.budget:.0%} of the single-task parameters and scored by Δm on the val split, "
        f"post-train {s.post_iters}. Metrics on the test split; Δm = Maninis (primary metric per task) "
        f"against the single-task rows.\n\n" + table(header, rows)
        + f"\n\nTargets: AutoMTL Δm ≥ hard sharing: **{'met' if dm['AutoMTL'] >= dm[hard.name] else 'missed'}** "
        f"({dm['AutoMTL']:+.2f}% vs {dm[hard.name]:+.2f}%); AutoMTL params ≤ 60% of single-task: "
        f"**{'met' if auto.params <= 0.6 * comp.single_task_params else 'missed'}** "
        f"({100 * auto.params / comp.single_task_params:.0f}%). Other Δm variants of AutoMTL: "
        + ", ".join(f"{k[8:]} {v:+.2f}%" for k, v in auto.delta_m.items()) + ".")
    if len(comp.rows) > 3:
        m = comp.rows[3]
        text += (f" Control: hard sharing trained for AutoMTL's {automtl_weight_steps(s)} weight-update steps "
                 f"gets Δm {dm[m.name]:+.2f}% (AutoMTL {'still ahead' if dm['AutoMTL'] >= dm[m.name] else 'behind'}).")
    return text + f" Wall time of the whole comparison: {comp.seconds:.0f} s."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long settings; prints, writes nothing")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every iteration count")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default=None, help="default: work_dirs/bench_train[_long]")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the section from the work dir's comparison.json, no training")
    parser.add_argument("--overhead-only", action="store_true", help="only the Trainer-overhead section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from automtl.cli.compare import QUICK, CompareSettings, format_table, load_comparison, run_comparison, table_rows

    long_run = args.scale != 1.0
    work_dir = args.work_dir or ("work_dirs/bench_train_long" if long_run else "work_dirs/bench_train")
    if not args.report_only:
        plain, ours = overhead(5 if args.quick else 40)
        body = ("3 tasks, fixed all-share policy, same model, data and Adam; best of 3 alternating rounds of "
                "40 steps (the machine's 2 cores are shared with other jobs):\n\n"
                + table(["loop", "s / step", "ratio"],
                        [["hand-written PyTorch loop", f"{plain:.4f}", "1.00"],
                         ["Trainer.post_train (finite-loss checks, logging, checkpoints)", f"{ours:.4f}",
                          f"{ours / plain:.2f}"]]))
        if args.quick:
            print(body)
        else:
            write_section("train_overhead", "Training: Trainer overhead per step", body,
                          "python -m benchmarks.bench_train --overhead-only")
        if args.overhead_only:
            return
    if args.report_only:
        comp = load_comparison(work_dir)
    else:
        settings = dataclasses.replace(QUICK if args.quick else CompareSettings(), matched_hard_sharing=True)
        if long_run:
            settings = settings.scaled(args.scale)
        comp = run_comparison(settings, work_dir, progress=False, say=lambda m: print(m, flush=True))
    print(format_table(*table_rows(comp)))
    body = demo_body(comp, args.threads)
    name = "train_demo_long" if long_run else "train_demo"
    title = "Training: demo comparison" + (f" (longer run, {args.scale:g}x iterations)" if long_run else "")
    cmd = "python -m benchmarks.bench_train" + (f" --scale {args.scale:g}" if long_run else "")
    if args.quick:
        print(body)
    else:
        write_section(name, title, body, cmd)


if __name__ == "__main__":
    main()
