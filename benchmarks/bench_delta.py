"""Delta sharing benchmark: single-task networks, hard sharing, an AutoMTL policy, delta sharing
at two densities and the MLoRE decoder on the synthetic scenes, side by side in one run, and
sparse delta inference against separate sub-task networks in wall time over a density sweep.

    python -m benchmarks.bench_delta              # table + sweep (several minutes on 1 free core)
    python -m benchmarks.bench_delta --scale 2    # a longer training run
    python -m benchmarks.bench_delta --quick      # seconds; checks the script, writes nothing

Everything runs on the CPU with one thread (``torch.set_num_threads``). The table gives, per
method: parameters of the deployed model, multiply-accumulates for all tasks (conv / linear,
delta layers at their measured sparsity: :func:`automtl.supernet.flops.flop_report`), CPU
latency of the deployed model for all tasks (median), test metrics and Δm against the
single-task networks. The sweep sets ΔW and the delta activations of an untrained, larger model
to one density each and times the sub-tasks' cost on top of the base against separate networks.
Writes the ``delta`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks._report import table, write_section

BASE = "segment_semantic"
PRIMARY = {"segment_semantic": "mIoU", "depth_zbuffer": "abs_err", "normal": "mean"}
DELTA_M = "delta_m_maninis"  # mean relative change of each task's primary metric


@dataclass
class Row:
    """One method of the table."""

    name: str
    params: int
    macs: int
    latency_ms: float
    results: dict[str, dict[str, float]]
    delta_m: float = float("nan")
    notes: dict[str, Any] = field(default_factory=dict)


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn()`` in milliseconds (one warm-up call)."""
    with torch.no_grad():
        fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def macs_of(module: nn.Module, fn: Callable[[], Any]) -> int:
    """Conv / linear multiply-accumulates of every layer of ``module`` during ``fn()``."""
    from automtl.supernet.flops import layer_macs

    total = [0]

    def hook(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            total[0] += layer_macs(m, inputs[0], output)

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            fn()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def settings(quick: bool, scale: float) -> Any:
    from automtl.cli.compare import QUICK, CompareSettings

    if quick:
        return QUICK
    return CompareSettings(n_train=256, n_val=64, n_test=96, baseline_iters=max(2, round(150 * scale)))


def run_table(s: Any, work: Path, runs: int, say: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    """Train every method for the same number of iterations; measure the table's columns."""
    from automtl.cli.compare import _loaders, _model, _referable, _trainer
    from automtl.delta import delta_density
    from automtl.metrics import Baseline, default_metrics
    from automtl.supernet import Policy
    from automtl.supernet.flops import flop_report

    tasks = list(s.tasks)
    subs = [t for t in tasks if t != BASE]
    iters = s.baseline_iters
    train, val, test = _loaders(s)
    x = next(iter(test[BASE]))[0]
    rows: list[Row] = []
    extra: dict[str, Any] = {"iters": iters, "batch": tuple(x.shape), "size": s.size, "widths": tuple(s.widths)}

    # single-task networks
    single, single_macs, single_ms, params = {}, {}, {}, 0
    for t in tasks:
        say(f"single-task {t}: {iters} iterations")
        model = _model(s, [t])
        tr = _trainer(s, model, [t], train, val, work / "single" / t, False)
        pol = Policy.all(model, "share")
        tr.post_train(iters, s.lr, reload=pol)
        single[t] = tr.validate("fixed", loaders=test)[t]
        tr.close()
        params += model.count_params(pol)["total"]
        single_macs[t] = flop_report(model, x, pol).total
        net = model.compile(pol).eval()
        single_ms[t] = median_ms(lambda net=net: net(x), runs)
    baseline = Baseline.from_metrics(_referable(single), default_metrics(tasks))
    rows.append(Row("single-task networks", params, sum(single_macs.values()), sum(single_ms.values()), single,
                    baseline.delta(single)[DELTA_M]))
    extra["single_macs"], extra["single_ms"] = single_macs, single_ms

    def finish(name: str, model: Any, tr: Any, pol: Policy, **notes: Any) -> Row:
        res = tr.validate("fixed", policy=pol, loaders=test)
        res = {t: res[t] for t in tasks}
        net = model.compile(pol).eval()  # delta layers: the default (dense) deployment
        row = Row(name, model.count_params(pol)["total"], flop_report(model, x, pol).total,
                  median_ms(lambda: net(x), runs), res, baseline.delta(res)[DELTA_M], notes)
        rows.append(row)
        return row

    # hard sharing
    say(f"hard sharing: {iters} iterations")
    model = _model(s, tasks)
    tr = _trainer(s, model, tasks, train, val, work / "hard", False)
    share = Policy.all(model, "share")
    tr.post_train(iters, s.lr, reload=share)
    finish("hard sharing", model, tr, share)
    tr.close()

    # AutoMTL: the same iterations split over its three phases, argmax policy
    say(f"AutoMTL policy: {iters // 4} + {iters // 4} + {iters // 2} iterations")
    model = _model(s, tasks)
    tr = _trainer(s, model, tasks, train, val, work / "automtl", False)
    tr.pre_train(max(1, iters // 4), s.lr)
    tr.alter_train_with_reg(max(1, iters // 4), s.policy_network_iters, policy_lr=s.policy_lr, network_lr=s.lr,
                            loss_lambda={"policy": s.policy_lambda})
    pol = model.argmax_policy()
    tr.post_train(max(1, iters // 2), s.lr, reload=pol)
    finish("AutoMTL policy", model, tr, pol, counts=pol.counts())
    tr.close()

    # delta sharing: step 1 once (half the iterations), then steps 2 and 3 per density
    say(f"delta sharing: step 1 {iters // 2} iterations, then {iters // 4} + {iters // 4} per density")
    model = _model(s, tasks)
    model.add_deltas(BASE)
    tr = _trainer(s, model, tasks, train, val, work / "delta", False)
    dpol = Policy.delta(model, BASE)
    tr.delta_train(max(1, iters // 2), s.lr, reload=dpol, l0_target=0.1)
    step1 = copy.deepcopy(model)
    tr.close()
    for density in (0.1, 0.3):
        model = copy.deepcopy(step1)
        tr = _trainer(s, model, tasks, train, val, work / f"delta_{density}", False)
        tr.delta_support_train(max(1, iters // 4), s.lr, reload=dpol, density=density)
        tr.delta_act_train(max(1, iters // 4), 3e-4, reload=dpol, threshold=0.15)
        report = flop_report(model, x, dpol)
        sub_macs = report.total - report.per_task[BASE]
        separate = sum(single_macs[t] for t in subs)
        sparse_net = model.compile(dpol, sparse_deltas=True).eval()
        base_net = model.compile(dpol, tasks=[BASE]).eval()
        base_ms = median_ms(lambda n=base_net: n(x), runs)
        sparse_ms = median_ms(lambda n=sparse_net: n(x), runs)
        finish(f"delta sharing, {density:.0%} density", model, tr, dpol,
               weight_density=delta_density(model.weight_deltas(dpol)),
               activation_density=report.activation_density, sub_macs=sub_macs,
               separate_sub_macs=separate, ratio=sub_macs / separate,
               sparse_ms=sparse_ms, base_ms=base_ms, separate_sub_ms=sum(single_ms[t] for t in subs))
        tr.close()

    # MLoRE decoder (when it has landed)
    try:
        from automtl.models import build_mlore_model
    except ImportError:  # pragma: no cover - depends on the checkout
        extra["mlore"] = "not available"
    else:
        say(f"MLoRE decoder: {iters} iterations")
        torch.manual_seed(s.seed)
        model = build_mlore_model(tasks, backbone=dict(type="TinyResNet", widths=s.widths),
                                  levels=tuple(range(len(s.widths))),
                                  decoder=dict(channels=32, ranks=(4, 8, 12, 16), top_k=2, blocks=1),
                                  input_shape=(1, 3, s.size, s.size))
        tr = _trainer(s, model, tasks, train, val, work / "mlore", False)
        pol = Policy.all(model, "share")
        tr.post_train(iters, s.lr, reload=pol)
        res = tr.validate("fixed", loaders=test)
        res = {t: res[t] for t in tasks}
        model.eval()
        fused = model.reparameterize(pol).eval()
        rows.append(Row("MLoRE decoder (shared trunk)", model.count_params(pol)["total"],
                        macs_of(fused, lambda: fused.forward_all(x)), median_ms(lambda: fused.forward_all(x), runs),
                        res, baseline.delta(res)[DELTA_M]))
        tr.close()
    return rows, extra


def sweep(densities: tuple[float, ...], runs: int, *, widths: tuple[int, ...], size: int, batch: int,
          say: Callable[[str], None]) -> list[dict[str, float]]:
    """Sparse delta inference vs separate sub-task networks at each density (untrained model:
    ΔW set to the density per layer, thresholds set so the delta activations keep that density)."""
    from automtl.cli.compare import CompareSettings, _model
    from automtl.delta import DeltaLayer, fix_support
    from automtl.supernet import Policy
    from automtl.supernet._plan import ref_name
    from automtl.supernet.flops import flop_report

    s = CompareSettings(widths=widths, size=size)
    tasks = list(s.tasks)
    model = _model(s, tasks).eval()
    model.add_deltas(BASE)
    pol = Policy.delta(model, BASE)
    x = torch.randn(batch, 3, size, size)
    single = _model(s, [BASE]).eval()
    single_net = single.compile(Policy.all(single, "share")).eval()
    separate_ms = median_ms(lambda: single_net(x), runs) * (len(tasks) - 1)
    base_net = model.compile(pol, tasks=[BASE]).eval()
    base_ms = median_ms(lambda: base_net(x), runs)
    out = []
    for rho in densities:
        for d in model.weight_deltas(pol):
            d.set_mode("l1")
            with torch.no_grad():
                assert d.delta is not None
                d.delta.normal_(0, 0.05)
            fix_support([d], rho)
            d.set_threshold(0.0)
        net = model.compile(pol, sparse_deltas=True).eval()
        layers = [m for m in net.modules() if isinstance(m, DeltaLayer)]
        seen: dict[int, torch.Tensor] = {}

        def grab(mod: nn.Module, args: tuple[Any, ...], seen: dict[int, torch.Tensor] = seen) -> None:
            if args[1] is not args[0]:
                seen[id(mod)] = (args[0] - args[1]).abs().flatten()

        handles = [m.register_forward_pre_hook(grab) for m in layers]
        with torch.no_grad():
            net(x)
        for h in handles:
            h.remove()
        for m in layers:  # keep the top ρ of |Δx| at every layer
            if id(m) in seen:
                v = seen[id(m)]
                k = max(1, min(v.numel(), round((1 - rho) * v.numel())))
                m.delta.set_threshold(float(v.kthvalue(k).values) + 1e-12)
        for m in layers:  # one untimed pass records the delta activations' density
            m.delta.track_activations = True
        with torch.no_grad():
            net(x)
        acts = [m.delta.last_activation for m in layers if id(m) in seen and m.delta.last_activation]
        act_density = sum(a[0] for a in acts) / max(1, sum(a[1] for a in acts))
        for m in layers:
            m.delta.track_activations = False
        all_ms = median_ms(lambda n=net: n(x), runs)
        for layer in pol.layers:  # the same thresholds in the supernet, for its FLOP report
            for t in pol.tasks:
                name = ref_name(("delta", layer, t))
                if name in net.layers:
                    model.unit(layer).part("delta", t).set_threshold(float(net.layers[name].delta.threshold))
        rep = flop_report(model, x, pol)
        dense_net = model.compile(pol, sparse_deltas=False).eval()
        dense_ms = median_ms(lambda n=dense_net: n(x), runs)
        row = {"density": rho, "act_density": act_density, "sub_ms": all_ms - base_ms, "separate_ms": separate_ms,
               "dense_delta_sub_ms": dense_ms - base_ms,
               "sub_macs_ratio": (rep.total - rep.per_task[BASE]) / ((len(tasks) - 1) * rep.per_task[BASE])}
        say(f"density {rho:.0%}: sub-tasks {row['sub_ms']:.1f} ms on top of the base vs separate "
            f"{separate_ms:.1f} ms (MACs ratio {row['sub_macs_ratio']:.2f})")
        out.append(row)
    return out


def crossover(rows: list[dict[str, float]]) -> str:
    """The highest swept density at which the sparse sub-tasks are still faster (or none)."""
    faster = [r["density"] for r in rows if r["sub_ms"] < r["separate_ms"]]
    if not faster:
        return f"none: slower than separate networks at every swept density (lowest {rows[0]['density']:.0%})"
    above = [r["density"] for r in rows if r["density"] > max(faster)]
    return f"between {max(faster):.0%} and {min(above):.0%}" if above else f"above {max(faster):.0%}"


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def report(rows: list[Row], extra: dict[str, Any], swept: list[dict[str, float]], sweep_cfg: str) -> str:
    """The markdown body of the section."""
    tasks = list(rows[0].results)
    head = ["method", "params", "GMACs (all tasks)", "CPU ms (all tasks)"] + \
        [f"{t} {PRIMARY.get(t, '')}" for t in tasks] + ["Δm %"]
    body = [[r.name, f"{r.params:,}", f"{r.macs / 1e9:.3f}", f"{r.latency_ms:.1f}"] +
            [_fmt(r.results[t].get(PRIMARY.get(t, ""), float("nan"))) for t in tasks] + [_fmt(r.delta_m)]
            for r in rows]
    lines = [f"Synthetic scenes (size {extra['size']}, {len(tasks)} tasks, base task `{BASE}`), TinyResNet "
             f"{extra['widths']}, every method trained {extra['iters']} iterations (AutoMTL: ¼ pre-train, "
             f"¼ policy-train, ½ post-train; delta: "
             f"½ L0 step shared by both densities, ¼ fixed support, ¼ activation L1), test split; latency and "
             f"MACs on one test batch {extra['batch']}, one thread, median; Δm against the single-task networks "
             "(higher is better). The machine was shared with other jobs while this ran, so absolute times are "
             "noisy; ratios within one run are the meaningful part.", "", table(head, body), ""]
    for r in rows:
        if "ratio" in r.notes:
            n = r.notes
            acts = ", ".join(f"{t} {v:.1%}" for t, v in n["activation_density"].items())
            lines.append(f"- **{r.name}**: ΔW density {n['weight_density']:.1%}, delta-activation density "
                         f"{acts}; sub-task MACs {n['sub_macs'] / 1e6:.1f} M vs {n['separate_sub_macs'] / 1e6:.1f} M "
                         f"for separate sub-task networks = **{n['ratio']:.2f}×** (target at 10 %: ≤ 0.5×). "
                         f"Wall time: base alone {n['base_ms']:.1f} ms, all tasks with dense delta layers "
                         f"{r.latency_ms:.1f} ms (the table; `compile()`'s default), with the sparse kernels "
                         f"{n['sparse_ms']:.1f} ms; the two sub-tasks as separate networks "
                         f"{n['separate_sub_ms']:.1f} ms.")
    if "mlore" in extra:
        lines.append(f"- MLoRE: {extra['mlore']}")
    lines += ["", f"Sparse delta inference vs separate sub-task networks ({sweep_cfg}; untrained weights: ΔW "
              "and the delta activations set to each density per layer; times are the sub-tasks' cost on top "
              "of the base, i.e. all tasks minus the base alone):", ""]
    lines.append(table(["density", "measured Δx density", "sparse sub-tasks ms", "dense-delta sub-tasks ms",
                        "separate sub-task networks ms", "sub-task MACs / separate"],
                       [[f"{r['density']:.0%}", f"{r['act_density']:.1%}", f"{r['sub_ms']:.1f}",
                         f"{r['dense_delta_sub_ms']:.1f}", f"{r['separate_ms']:.1f}", f"{r['sub_macs_ratio']:.2f}"]
                        for r in swept]))
    lines += ["", f"Crossover (sparse sub-tasks stop being faster than separate networks): {crossover(swept)}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long settings; prints, writes nothing")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the training iterations")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per latency (median)")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = settings(args.quick, args.scale)
    runs = 2 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        rows, extra = run_table(s, work, runs, say=lambda m: print(m, flush=True))
    densities = (0.05, 0.3) if args.quick else (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    cfg = dict(widths=(8, 16), size=32, batch=2) if args.quick else dict(widths=(32, 64, 128), size=64, batch=8)
    swept = sweep(densities, min(runs, 3), say=lambda m: print(m, flush=True), **cfg)  # type: ignore[arg-type]
    sweep_cfg = f"TinyResNet {cfg['widths']}, input {cfg['batch']}×3×{cfg['size']}²"
    body = report(rows, extra, swept, sweep_cfg)
    print(body)
    if not args.quick:
        write_section("delta", "Delta sharing: sub-tasks as sparse deltas on a base task", body,
                      "python -m benchmarks.bench_delta" + (f" --scale {args.scale}" if args.scale != 1 else ""))


if __name__ == "__main__":
    main()
