"""Data, metrics and loss-weighting costs: rendering speed, cached epochs, metric and weighting overhead.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.bench_data [--quick]``
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from automtl.data.synthetic import TASKS, make_loaders, render_sample
from automtl.metrics import default_metrics
from automtl.train.losses import default_criteria
from automtl.train.weighting import build_weighting
from benchmarks._report import table, write_section


def _time(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def bench_render(quick: bool) -> str:
    rows = []
    for size in (32, 64, 128):
        n = 10 if quick else 40
        t = _time(lambda: [render_sample(0, i, size) for i in range(n)], 1) / n
        rows.append([f"{size}x{size}", f"{t * 1000:.2f}", f"{1 / t:.0f}"])
    return table(["resolution", "ms / scene (all 5 tasks)", "scenes / s"], rows)


def bench_epochs(quick: bool) -> str:
    n = 128 if quick else 512
    t0 = time.perf_counter()
    train, _ = make_loaders(TASKS, size=64, n_train=n, n_val=16, batch_size=16, seed=0)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for task in TASKS:
        for _ in train[task]:
            pass
    cached = time.perf_counter() - t0
    return table(["step", "seconds", "per sample (ms)"],
                 [[f"render + cache {n} scenes (make_loaders)", f"{build:.2f}", f"{build / n * 1000:.2f}"],
                  [f"one cached epoch over all {len(TASKS)} task loaders", f"{cached:.2f}",
                   f"{cached / (n * len(TASKS)) * 1000:.3f}"],
                  ["ratio render / cached", f"{build / cached * len(TASKS):.1f}x", ""]])


def bench_metrics(quick: bool) -> str:
    torch.manual_seed(0)
    train, _ = make_loaders(TASKS, size=64, n_train=16, n_val=16, batch_size=16, seed=0)
    metrics = default_metrics(TASKS)
    crit = default_criteria(TASKS)
    rows = []
    chans = {"segment_semantic": 5, "depth_zbuffer": 1, "normal": 3, "edge_texture": 1, "saliency": 1}
    for task in TASKS:
        _, target = next(iter(train[task]))
        pred = torch.randn(16, chans[task], 64, 64)
        m = metrics[task]
        tm = _time(lambda: m.update(pred, target), 5 if quick else 20)
        tl = _time(lambda: crit[task](pred, target), 5 if quick else 20)
        rows.append([task, type(m).__name__, f"{tm * 1000:.2f}", f"{tl * 1000:.2f}"])
    return table(["task", "metric", "update ms / batch of 16x64x64", "loss ms / batch"], rows)


def bench_weighting(quick: bool) -> str:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
    heads = nn.ModuleDict({t: nn.Conv2d(32, c, 1) for t, c in
                           {"segment_semantic": 5, "depth_zbuffer": 1, "normal": 3}.items()})
    tasks = list(heads)
    train, _ = make_loaders(tasks, size=32, n_train=16, n_val=16, batch_size=16, seed=0)
    batches = {t: next(iter(train[t])) for t in tasks}
    crit = default_criteria(tasks)
    shared = list(trunk.parameters())
    rows, base = [], None
    for name in ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad"):
        w = build_weighting(name, tasks)

        def step():
            losses = {t: crit[t](heads[t](trunk(batches[t][0])), batches[t][1]) for t in tasks}
            for p in list(trunk.parameters()) + list(heads.parameters()):
                p.grad = None
            w.backward(losses, shared_parameters=shared)

        t = _time(step, 3 if quick else 10)
        base = base or t
        rows.append([name, f"{t * 1000:.1f}", f"{t / base:.2f}x"])
    return table(["method", "ms / step (3 tasks, forward + backward)", "vs fixed"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    torch.set_num_threads(1)
    body = "\n\n".join([
        "### Synthetic scene rendering (numpy ray caster, one thread)", bench_render(args.quick),
        "### Cached epochs", bench_epochs(args.quick),
        "### Metric and loss cost per batch", bench_metrics(args.quick),
        "### Loss-weighting overhead (small CNN, 32x32, batch 16 per task)", bench_weighting(args.quick),
    ])
    print(body)
    write_section("data", "Data, metrics and loss weighting", body,
                  "OMP_NUM_THREADS=1 python -m benchmarks.bench_data" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
