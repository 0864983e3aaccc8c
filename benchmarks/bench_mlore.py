"""MLoRE decoder benchmarks, side by side in one run (one thread):

1. inference of the re-parameterised decoder (one 3×3 conv per block, task and image, batched)
   against the multi-path decoder and against the re-parameterised form run one image at a time
   (MLoRE's own code loops over images): same inputs, eval mode; parameters and FLOPs of the forms;
2. on the synthetic scenes: single-task baselines, plain heads (hard sharing), AutoMTL and MLoRE
   over the same TinyResNet, trained on the same data: params, FLOPs, per-task metrics, Δm.

    python -m benchmarks.bench_mlore            # a few minutes on one free core; writes BENCHMARKS.md
    python -m benchmarks.bench_mlore --quick    # seconds; checks the script, writes nothing
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._report import table, write_section

TASKS = {"segment_semantic": 5, "depth_zbuffer": 1, "normal": 3}
#: (name, level channels, level sides, channels, ranks, top_k, batch)
SETTINGS = [
    ("MLoRE's experts (15, ranks 16…128, k=9), C=128, 4 ViT levels 192×16×16", [192] * 4, [16] * 4, 128,
     tuple(range(16, 129, 8)), 9, 4),
    ("synthetic config (8 experts, ranks 4…32, k=5), C=32, TinyResNet levels at 32/16/8 px", [16, 32, 64],
     [32, 16, 8], 32, (4, 8, 12, 16, 20, 24, 28, 32), 5, 16),
]
SYNTHETIC_DECODER = dict(channels=32, ranks=(4, 8, 12, 16, 20, 24, 28, 32), top_k=5, blocks=2)


def median_seconds(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median wall time of each function over ``rounds`` interleaved rounds (after one warm-up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for f in fns.values():
            f()
        for _ in range(rounds):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def one_setting(name: str, chans: list[int], sides: list[int], c: int, ranks: tuple[int, ...], k: int,
                batch: int, rounds: int) -> list[list[str]]:
    """Rows of one decoder setting: multi-path vs re-parameterised (batched) vs per image."""
    from automtl.heads import MLoReDecoder
    from automtl.heads.mlore_fused import forward_flops

    torch.manual_seed(0)
    dec = MLoReDecoder(chans, TASKS, channels=c, ranks=ranks, top_k=k)
    dec.train()
    with torch.no_grad():  # BatchNorm statistics of real activations, so folding folds something
        for t in TASKS:
            dec([torch.randn(batch, ci, s, s) for ci, s in zip(chans, sides)], t)
    dec.eval()
    fused = dec.reparameterize()
    feats = [torch.randn(batch, ci, s, s) for ci, s in zip(chans, sides)]
    task = "segment_semantic"
    singles = [[f[i:i + 1] for f in feats] for i in range(batch)]
    with torch.no_grad():
        err = (fused(feats, task) - dec(feats, task)).abs().max().item()
    secs = median_seconds({
        "multi": lambda: dec(feats, task),
        "fused": lambda: fused(feats, task),
        "loop": lambda: [fused(f, task) for f in singles],
    }, rounds)
    flops = {"multi": forward_flops(lambda: dec(feats, task)), "fused": forward_flops(lambda: fused(feats, task))}
    params = {"multi": sum(p.numel() for p in dec.parameters()),
              "fused": sum(p.numel() for p in fused.parameters())}
    rows = []
    for key, label in (("multi", "multi-path (experts as low-rank convs)"),
                       ("fused", "re-parameterised, batched (grouped conv)"),
                       ("loop", "re-parameterised, one image at a time")):
        form = "fused" if key == "loop" else key
        rows.append([name if key == "multi" else "", label, f"{params[form]:,}", f"{flops[form] / 1e9:.2f}",
                     f"{1e3 * secs[key]:.1f}", f"{secs['multi'] / secs[key]:.2f}×",
                     f"{err:.1e}" if key == "fused" else ""])
    return rows


def inference(rounds: int, quick: bool) -> str:
    """Table 1: every setting's forms side by side."""
    rows = [row for setting in (SETTINGS[1:] if quick else SETTINGS) for row in one_setting(*setting, rounds)]
    return table(["setting", "form", "params", "GFLOPs / batch", "ms / batch", "speed-up vs multi-path",
                  "max abs. output diff."], rows)


def _mflops(model: Any, *args: Any) -> float:
    """MFLOPs of one ``model(*args)`` call (modules in eval mode)."""
    from automtl.heads.mlore_fused import forward_flops

    if isinstance(model, torch.nn.Module):
        model.eval()
    return forward_flops(lambda: model(*args)) / 1e6


def comparison(iters: int, quick: bool, work: Path) -> tuple[str, dict[str, Any]]:
    """Table 2: single-task, plain heads, AutoMTL and MLoRE on the synthetic scenes (test split)."""
    from automtl.cli.compare import QUICK, CompareSettings, _loaders, _model, _referable, _trainer
    from automtl.metrics import Baseline, default_metrics, metric_for_task
    from automtl.models import build_mlore_model
    from automtl.supernet import Policy
    from automtl.train.policy_sampling import choose_policy

    s = QUICK if quick else CompareSettings(n_train=256, n_val=64, n_test=96)
    tasks = list(s.tasks)
    train, val, test = _loaders(s)
    x = torch.zeros(1, 3, s.size, s.size)
    rows: list[list[Any]] = []
    out: dict[str, Any] = {}

    def record(name: str, params: int, mflops: float, res: dict, seconds: float, base: Baseline | None) -> None:
        dm = base.delta(res).get("delta_m_maninis", 0.0) if base is not None else 0.0
        out[name] = {"params": params, "mflops": mflops, "results": res, "delta_m": dm, "seconds": seconds}
        prim = [metric_for_task(t).primary for t in tasks]
        rows.append([name, f"{params:,}", f"{mflops:.1f}"] + [f"{res[t][p]:.4g}" for t, p in zip(tasks, prim)]
                    + [f"{dm:+.2f}", f"{seconds:.0f}"])

    single, single_val, params, mflops, t0 = {}, {}, 0, 0.0, time.time()
    for t in tasks:
        model = _model(s, [t])
        tr = _trainer(s, model, [t], train, val, work / "single" / t, False)
        share = Policy.all(model, "share")
        tr.post_train(iters, s.lr, reload=share)
        single[t] = tr.validate("fixed", loaders=test)[t]
        single_val[t] = tr.validate("fixed")[t]
        params += model.count_params(share)["total"]
        mflops += _mflops(model.compile(share), x)
        tr.close()
    metrics = default_metrics(tasks)
    base = Baseline.from_metrics(_referable(single), metrics, {"split": "test", "iters": iters})
    val_base = Baseline.from_metrics(_referable(single_val), metrics, {"split": "val", "iters": iters})
    record("single-task (Δm reference)", params, mflops, single, time.time() - t0, base)

    t0 = time.time()
    model = _model(s, tasks)
    tr = _trainer(s, model, tasks, train, val, work / "hard", False)
    share = Policy.all(model, "share")
    tr.post_train(iters, s.lr, reload=share)
    res = tr.validate("fixed", loaders=test)
    tr.close()
    record("plain heads (hard sharing, ConvHead)", model.count_params(share)["total"],
           _mflops(model.compile(share), x), res, time.time() - t0, base)

    t0 = time.time()
    model = _model(s, tasks)
    tr = _trainer(s, model, tasks, train, val, work / "automtl", False)
    tr.pre_train(iters // 2, s.lr)
    tr.alter_train_with_reg(iters // 2, s.policy_network_iters, policy_lr=s.policy_lr, network_lr=s.lr,
                            loss_lambda={"policy": s.policy_lambda})
    report = choose_policy(model, s.n_policies, seed=s.seed, budget=s.budget, val_loaders=val,
                           metrics=default_metrics(tasks), baseline=val_base, device=tr.device)
    tr.post_train(iters, s.lr, reload=report.chosen.policy)
    res = tr.validate("fixed", loaders=test)
    tr.close()
    record("AutoMTL (TinyResNet + ConvHead)", report.chosen.params,
           _mflops(model.compile(report.chosen.policy), x), res, time.time() - t0, base)

    t0 = time.time()
    torch.manual_seed(s.seed)
    decoder = dict(SYNTHETIC_DECODER, channels=8, ranks=(2, 4, 8), top_k=2) if quick else SYNTHETIC_DECODER
    mlore = build_mlore_model(tasks, backbone=dict(type="TinyResNet", widths=s.widths), levels=None,
                              decoder=decoder, input_shape=(1, 3, s.size, s.size))
    tr = _trainer(s, mlore, tasks, train, val, work / "mlore", False)
    share = Policy.all(mlore, "share")
    tr.post_train(iters, s.lr, reload=share)
    res = tr.validate("fixed", loaders=test)
    tr.close()
    mlore.eval()
    seconds = time.time() - t0
    deployed = mlore.reparameterize(share)
    record("MLoRE decoder (shared TinyResNet), re-parameterised", mlore.count_params(share)["total"],
           _mflops(deployed.forward_all, x), res, seconds, base)
    fused_params = sum(p.numel() for p in deployed.decoder.parameters()) + mlore.trunk.count_params(share)["total"]
    out["MLoRE multi-path"] = {"mflops": _mflops(mlore.forward_all, x, share), "fused_params": fused_params}
    prim = [f"{t} {metric_for_task(t).primary}" for t in tasks]
    body = table(["method", "params", "MFLOPs / image (all tasks)", *prim, "Δm (%)", "train time (s)"], rows)
    body += (f"\n\nMLoRE rows: params of the trained (multi-path) model; its multi-path inference takes "
             f"{out['MLoRE multi-path']['mflops']:.1f} MFLOPs per image, the re-parameterised one stores "
             f"{fused_params:,} parameters (the experts' kernels stacked at full rank).")
    return body, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long settings; prints, writes nothing")
    parser.add_argument("--iters", type=int, default=150,
                        help="training iterations per method (AutoMTL: half pre-train, half policy-train, "
                             "then this many post-train)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (median)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    iters = 4 if args.quick else args.iters
    rounds = 2 if args.quick else args.rounds
    speed = inference(rounds, args.quick)
    print(speed)
    with tempfile.TemporaryDirectory() as tmp:
        comp, _ = comparison(iters, args.quick, Path(tmp))
    print(comp)
    if args.quick:
        return
    body = (f"Inference, eval mode, same inputs, one task's prediction, {torch.get_num_threads()} thread(s); "
            f"median of {rounds} interleaved rounds. FLOPs: convolutions and matrix products "
            "(torch's FlopCounterMode). The multi-path form already runs every expert of a batch in two "
            "stacked convolutions; the re-parameterised form folds experts, task expert, shared conv and "
            "both BatchNorms into one 3×3 kernel per task and image and applies a batch with one grouped "
            "convolution.\n\n" + speed + "\n\n"
            f"Synthetic scenes ({', '.join(TASKS)}; 32 px, 256 training / 96 test images, batch 16), "
            f"{iters} training iterations per method (AutoMTL: {iters // 2} pre-train + {iters // 2} "
            f"policy-train + {iters} post-train, as in the demo comparison), metrics on the test split, "
            "Δm against the single-task networks. Short runs on a busy shared CPU: the ranking between "
            "methods is indicative only.\n\n" + comp)
    write_section("mlore", "MLoRE decoder: re-parameterised inference and comparison", body,
                  f"python -m benchmarks.bench_mlore --iters {iters}")


if __name__ == "__main__":
    main()
