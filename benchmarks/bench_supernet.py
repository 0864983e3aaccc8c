"""Supernet benchmark: compiled policies vs hand-written PyTorch, forward_all vs separate models,
mtl-stage vs fixed-policy steps, and peak memory.

Run ``python -m benchmarks.bench_supernet`` (ResNet-34, 3 tasks, batch 8 at 224², CPU) or with
``--quick`` (ResNet-18, batch 4 at 112²) on a small machine. Writes the ``supernet`` section of
BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn

from automtl.supernet import MTLModel, Policy

TASKS = {"segment_semantic": 13, "depth": 1, "normal": 3}


class Trunk(nn.Module):
    """A torchvision ResNet without pooling and classifier (dense features, stride 32)."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def make_heads() -> dict[str, nn.Module]:
    return {t: nn.Conv2d(512, n, 1) for t, n in TASKS.items()}


class HardSharing(nn.Module):
    """The hand-written baseline: one trunk, one head per task."""

    def __init__(self, trunk: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk(x)
        return {t: h(f) for t, h in self.heads.items()}


class SingleTask(nn.Module):
    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def mixed_policy(model: MTLModel) -> Policy:
    """Low half shared by all; then 'normal' branches off; the last quarter is task-specific."""
    layers = model.policy_layers
    n = len(layers)
    updates = {}
    for i, layer in enumerate(layers):
        if i >= 3 * n // 4:
            updates.update({(layer, t): "specialize" for t in model.tasks})
        elif i >= n // 2:
            updates[(layer, "normal")] = "specialize"
    return Policy.all(model).replace(updates)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, timed in alternation (fair under drifting load)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step(fn: Callable[[], Any], params: list[nn.Parameter]) -> Callable[[], None]:
    def step() -> None:
        for p in params:
            p.grad = None
        out = fn()
        outs = out.values() if isinstance(out, dict) else [out]
        sum(o.float().mean() for o in outs).backward()
    return step


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_during(fn: Callable[[], Any]) -> float:
    """Highest resident set size (MB) sampled every 2 ms while ``fn`` runs."""
    peak = [current_rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mb())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        done.set()
        th.join()
    return max(peak[0], current_rss_mb())


def measure_rss(args: argparse.Namespace) -> dict[str, float]:
    """(In a fresh process) RSS with the model loaded, and its peak during one training step."""
    torch.manual_seed(0)
    model = MTLModel(Trunk(args.arch), make_heads(), input_shape=(1, 3, args.size, args.size))
    x = torch.randn(args.batch, 3, args.size, args.size)
    policy = Policy.all(model)
    params = list(model.parameters())
    step = train_step(lambda: model(x, task="depth", stage=args.rss, policy=policy if args.rss == "fixed" else None,
                                    tau=5.0), params)
    step()  # warm-up: gradients allocated, caches built
    for p in params:
        p.grad = None
    base = current_rss_mb()
    return {"base_mb": base, "peak_mb": peak_rss_during(step)}


def bench_hard_sharing(args: argparse.Namespace, x: torch.Tensor) -> tuple[dict[str, Any], MTLModel, MTLModel]:
    """Compiled all-share vs hand-written hard sharing (forward + backward).

    Returns the results and the two supernets (shared BN, per-task BN) the next sections time;
    the compiled models and the hand-written one are freed on return.
    """
    trunk = Trunk(args.arch)
    heads = make_heads()
    hand = HardSharing(trunk, {t: h for t, h in heads.items()}).train()
    shared = MTLModel(trunk, heads, bn_per_task=False, input_shape=(1, 3, args.size, args.size))
    comp = shared.compile(Policy.all(shared)).train()
    pertask = MTLModel(trunk, heads, bn_per_task=True, input_shape=(1, 3, args.size, args.size))
    comp_bn = pertask.compile(Policy.all(pertask)).train()
    t = interleaved({
        "hand": train_step(lambda: hand(x), list(hand.parameters())),
        "compiled": train_step(lambda: comp(x), list(comp.parameters())),
        "compiled_bn_per_task": train_step(lambda: comp_bn(x), list(comp_bn.parameters())),
    }, args.reps)
    res = {**t, "params_hand": n_params(hand), "params_compiled": n_params(comp),
           "params_compiled_bn_per_task": n_params(comp_bn)}
    print("hard sharing", res, flush=True)
    return res, shared, pertask


def bench_policy_vs_separate(args: argparse.Namespace, x: torch.Tensor, shared: MTLModel, policy: Policy,
                             singles: list[SingleTask]) -> dict[str, Any]:
    """One policy: ``forward_all`` and its compiled model vs the separate single-task models (inference)."""
    compiled = shared.compile(policy).eval()
    with torch.no_grad():
        t = interleaved({
            "separate": lambda: [s(x) for s in singles],
            "forward_all": lambda: shared.forward_all(x, policy),
            "compiled": lambda: compiled(x),
        }, args.reps)
    return {**t, "params": shared.count_params(policy)["total"], "params_separate": sum(n_params(s) for s in singles),
            "conv_calls": sum(1 for s in compiled.steps if s[1] == "conv")}


def bench_vs_separate(args: argparse.Namespace, x: torch.Tensor, shared: MTLModel) -> dict[str, Any]:
    """``forward_all`` / ``compile`` vs three single-task models (inference), for three policies."""
    singles = [SingleTask(Trunk(args.arch), h).eval() for h in make_heads().values()]
    policies = {"all-share": Policy.all(shared), "all-specialize": Policy.all(shared, "specialize"),
                "mixed": mixed_policy(shared)}
    shared.eval()
    rows = {}
    for name, pol in policies.items():
        rows[name] = bench_policy_vs_separate(args, x, shared, pol, singles)
        print(name, rows[name], flush=True)
    return rows


def bench_stages(args: argparse.Namespace, x: torch.Tensor, pertask: MTLModel) -> dict[str, float]:
    """mtl-stage step vs fixed-policy step (one task, per-task BN, as in policy training)."""
    pertask.train()
    params = list(pertask.parameters())
    share = Policy.all(pertask)
    t = interleaved({
        "fixed": train_step(lambda: pertask(x, task="depth", stage="fixed", policy=share), params),
        "mtl": train_step(lambda: pertask(x, task="depth", stage="mtl", tau=5.0), params),
        "mtl_hard": train_step(lambda: pertask(x, task="depth", stage="mtl", tau=5.0, hard=True), params),
        "pre": train_step(lambda: pertask(x, task="depth", stage="pre"), params),
    }, args.reps)
    print("stages", t, flush=True)
    return t


def bench(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    shape = (args.batch, 3, args.size, args.size)
    x = torch.randn(shape)
    res: dict[str, Any] = {"config": vars(args).copy()}
    res["hard_sharing"], shared, pertask = bench_hard_sharing(args, x)  # 1.
    res["vs_separate"] = bench_vs_separate(args, x, shared)  # 2.
    del shared
    res["stages"] = bench_stages(args, x, pertask)  # 3.
    del pertask

    # 4. peak RSS, each stage in a fresh process
    res["rss"] = {}
    for stage in ("fixed", "mtl"):
        cmd = [sys.executable, "-m", "benchmarks.bench_supernet", "--rss", stage, "--arch", args.arch,
               "--batch", str(args.batch), "--size", str(args.size)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        res["rss"][stage] = json.loads(out.stdout.strip().splitlines()[-1])
    print("rss", res["rss"], flush=True)
    return res


def render(res: dict[str, Any]) -> str:
    from benchmarks._report import table

    c = res["config"]
    hs = res["hard_sharing"]
    ratio = hs["compiled"] / hs["hand"]
    lines = [f"Backbone {c['arch']} (torchvision, weights=None), tasks {list(TASKS)} with 1×1 conv heads, "
             f"batch {c['batch']} at {c['size']}², CPU, {torch.get_num_threads()} threads, "
             f"median of {c['reps']} interleaved runs after a warm-up.", "",
             "**Compiled all-share policy vs hand-written hard-sharing model (forward + backward)**", "",
             table(["model", "fwd+bwd s", "ratio vs hand", "params"], [
                 ["hand-written hard sharing", f"{hs['hand']:.3f}", "1.00", f"{hs['params_hand']:,}"],
                 ["compiled all-share, shared BN (`bn_per_task=False`)", f"{hs['compiled']:.3f}",
                  f"**{ratio:.3f}** (target ≤ 1.05: {'met' if ratio <= 1.05 else 'MISSED'})",
                  f"{hs['params_compiled']:,}"],
                 ["compiled all-share, per-task BN (default)", f"{hs['compiled_bn_per_task']:.3f}",
                  f"{hs['compiled_bn_per_task'] / hs['hand']:.3f}", f"{hs['params_compiled_bn_per_task']:,}"],
             ]), "",
             "With per-task BatchNorm the tasks' activations differ after the first norm, so only the "
             "stem convolution can run once; the trunk is shared in parameters, not in compute.", "",
             "**3 tasks: `forward_all` / `compile` vs three separate single-task models (inference, shared BN)**",
             ""]
    rows = []
    for name, r in res["vs_separate"].items():
        rows.append([name, f"{r['separate']:.3f}", f"{r['forward_all']:.3f} ({r['forward_all'] / r['separate']:.2f}×)",
                     f"{r['compiled']:.3f} ({r['compiled'] / r['separate']:.2f}×)", r["conv_calls"],
                     f"{r['params']:,} ({r['params'] / r['params_separate']:.2f}×)"])
    lines.append(table(["policy", "3 separate s", "forward_all s (ratio)", "compiled s (ratio)",
                        "conv calls", "params (ratio)"], rows))
    st = res["stages"]
    mtl_ratio = st["mtl"] / st["fixed"]
    rss = res["rss"]
    lines += ["", "**Policy-training step vs fixed-policy step (one task, per-task BN, forward + backward)**", "",
              table(["stage", "step s", "ratio vs fixed", "peak RSS MB (model loaded → peak)"], [
                  ["fixed (all-share)", f"{st['fixed']:.3f}", "1.00",
                   f"{rss['fixed']['base_mb']:.0f} → {rss['fixed']['peak_mb']:.0f}"],
                  ["mtl (Gumbel soft, τ=5)", f"{st['mtl']:.3f}",
                   f"**{mtl_ratio:.2f}** (target ≤ 2.5: {'met' if mtl_ratio <= 2.5 else 'MISSED'})",
                   f"{rss['mtl']['base_mb']:.0f} → {rss['mtl']['peak_mb']:.0f}"],
                  ["mtl hard (straight-through)", f"{st['mtl_hard']:.3f}", f"{st['mtl_hard'] / st['fixed']:.2f}", ""],
                  ["pre (branch average)", f"{st['pre']:.3f}", f"{st['pre'] / st['fixed']:.2f}", ""],
              ])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="ResNet-18, batch 4 at 112² (small machines)")
    p.add_argument("--arch", default="resnet34")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--rss", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss:
        print(json.dumps(measure_rss(args)))
        return
    if args.quick:
        args.arch, args.batch, args.size, args.reps = "resnet18", 4, 112, 3
    res = bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    body = render(res)
    print(body)
    if not args.no_write:
        from benchmarks._report import write_section

        cmd = "python -m benchmarks.bench_supernet" + (" --quick" if args.quick else "")
        write_section("supernet", "Supernet: compiled policies, forward_all, policy-training cost", body, cmd)


if __name__ == "__main__":
    main()
