"""Data, metrics and loss-weighting costs: rendering speed, cached epochs, metric and weighting overhead.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.bench_data [--quick]``
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

import torch
from torch import nn

from automtl.data.synthetic import TASKS, make_loaders, render_sample
from automtl.metrics import default_metrics
from automtl.train.losses import default_criteria
from automtl.train.weighting import Weighting, build_weighting
from benchmarks._report import endless_batches, table, write_section


def _time(fn, repeat: int) -> float:
    """Fastest of ``repeat`` calls (robust to other load on a shared machine)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_render(quick: bool) -> str:
    rows = []
    for size in (32, 64, 128):
        n = 10 if quick else 40
        t = min(_time(partial(render_sample, 0, i, size), 1) for i in range(n))
        rows.append([f"{size}x{size}", f"{t * 1000:.2f}", f"{1 / t:.0f}"])
    return table(["resolution", "ms / scene (all 5 tasks, fastest of the scenes)", "scenes / s"], rows)


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
        tm = _time(partial(m.update, pred, target), 5 if quick else 20)
        tl = _time(partial(crit[task], pred, target), 5 if quick else 20)
        rows.append([task, type(m).__name__, f"{tm * 1000:.2f}", f"{tl * 1000:.2f}"])
    return table(["task", "metric", "update ms / batch of 16x64x64", "loss ms / batch"], rows)


def _weighting_step(w: Weighting, trunk: nn.Module, heads: nn.ModuleDict, batches: dict[str, Any],
                    crit: dict[str, nn.Module], shared: list[nn.Parameter]) -> None:
    """One forward + ``w.backward`` over every task's batch, gradients cleared first."""
    losses = {t: crit[t](heads[t](trunk(batch[0])), batch[1]) for t, batch in batches.items()}
    for p in list(trunk.parameters()) + list(heads.parameters()):
        p.grad = None
    w.backward(losses, shared_parameters=shared)


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
    for name in ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad", "nash_mtl"):
        w = build_weighting(name, tasks)
        t = _time(partial(_weighting_step, w, trunk, heads, batches, crit, shared), 3 if quick else 10)
        base = base or t
        rows.append([name, f"{t * 1000:.1f}", f"{t / base:.2f}x"])
    return table(["method", "ms / step (3 tasks, forward + backward)", "vs fixed"], rows)


class _Net(nn.Module):
    """Small dense CNN: 5 conv stages (output stride 4); the first ``shared`` stages are shared."""

    CH = (32, 64, 64, 128, 128)

    def __init__(self, tasks: list[str], shared: int) -> None:
        super().__init__()
        from automtl.heads import ConvHead, task_out_channels

        def stage(i: int) -> nn.Module:
            cin = 3 if i == 0 else self.CH[i - 1]
            stride = 2 if i in (1, 3) else 1
            dil = 2 if i == 4 else 1
            return nn.Sequential(nn.Conv2d(cin, self.CH[i], 3, stride, padding=dil, dilation=dil, bias=False),
                                 nn.BatchNorm2d(self.CH[i]), nn.ReLU(inplace=True))

        self.tasks, self.shared = tasks, shared
        self.trunk = nn.Sequential(*[stage(i) for i in range(shared)])
        self.branches = nn.ModuleDict({t: nn.Sequential(*[stage(i) for i in range(shared, 5)]) for t in tasks})
        self.heads = nn.ModuleDict({t: ConvHead(self.CH[-1], task_out_channels(t)) for t in tasks})

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.branches[task](self.trunk(x)), out_size=x.shape[-2:])


def _train_eval(tasks: list[str], shared: int, train, val, iters: int, device: torch.device) -> dict:
    from automtl.metrics import default_metrics

    torch.manual_seed(0)
    net = _Net(tasks, shared).to(device)
    crit = default_criteria(tasks)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    its = endless_batches({t: train[t] for t in tasks})
    for _ in range(iters):
        opt.zero_grad()
        total = 0.0
        for t in tasks:
            x, y = next(its[t])
            total = total + crit[t](net(x.to(device), t), y.to(device))
        total.backward()
        opt.step()
        sched.step()
    net.eval()
    metrics = default_metrics(tasks)
    with torch.no_grad():
        for t in tasks:
            for x, y in val[t]:
                metrics[t].update(net(x.to(device), t), y.to(device))
    params = sum(p.numel() for p in net.parameters())
    return {"results": {t: metrics[t].compute() for t in tasks}, "params": params, "metrics": metrics}


def bench_probe(quick: bool) -> str:
    """Single-task vs partial vs hard sharing on the synthetic scenes (what to share matters?)."""
    from automtl.metrics import Baseline

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tasks = list(TASKS)
    n_train, iters = (256, 100) if quick else (3000, 2000)
    train, val = make_loaders(tasks, size=64, n_train=n_train, n_val=500, batch_size=32, seed=0)
    single = {t: _train_eval([t], 5, train, val, iters, device) for t in tasks}
    base_results = {t: single[t]["results"][t] for t in tasks}
    baseline = Baseline.from_metrics(base_results, {t: single[t]["metrics"][t] for t in tasks})
    rows = [["single-task x5", sum(s["params"] for s in single.values())]
            + [f"{base_results[t][baseline.primary[t]]:.2f}" for t in tasks] + ["0", "0", "0"]]
    for shared in (2, 4, 5):
        r = _train_eval(tasks, shared, train, val, iters, device)
        d = baseline.delta(r["results"])
        name = "hard sharing (5/5)" if shared == 5 else f"share first {shared}/5 stages"
        rows.append([name, r["params"]] + [f"{r['results'][t][baseline.primary[t]]:.2f}" for t in tasks]
                    + [f"{d['delta_m_maninis']:+.2f}", f"{d['delta_m_task_balanced']:+.2f}",
                       f"{d['delta_m_all_metrics']:+.2f}"])
    head = ["model", "params"] + [f"{t} {baseline.primary[t]}" for t in tasks] + \
        ["Δm maninis %", "Δm task-bal. %", "Δm all %"]
    note = (f"{n_train} train / 500 val scenes at 64x64, {iters} iterations, batch 32 per task, Adam 2e-3 "
            f"cosine, device {device.type}. Δm against the single-task models of the same run.")
    return note + "\n\n" + table(head, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--probe", action="store_true",
                    help="only the sharing probe: single-task vs partial vs hard sharing (use a GPU)")
    args = ap.parse_args()
    if args.probe:
        body = bench_probe(args.quick)
        print(body)
        write_section("data_probe", "Synthetic scenes: does what to share matter?", body,
                      "python -m benchmarks.bench_data --probe" + (" --quick" if args.quick else ""))
        return
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
