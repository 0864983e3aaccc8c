"""ViT-MVT benchmarks: supernet vs exported subnet vs a plain ViT (CPU), counting speed, and
the bf16/AMP supernet training throughput on a GPU (``--device cuda``).

    python benchmarks/bench_vit_mvt.py            # CPU, batch 8 at 224², writes BENCHMARKS.md
    python benchmarks/bench_vit_mvt.py --quick    # CPU, batch 2 (for a busy machine)
    python benchmarks/bench_vit_mvt.py --device cuda
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._report import table, write_section  # noqa: E402
from search_spaces.vit_mvt import build_space, build_supernet, export_subnet, load_subnet  # noqa: E402

TINY = ROOT / "configs" / "nas" / "vit_mvt_tiny" / "subnet.yaml"


class _Block(nn.Module):
    """Pre-norm transformer block (fallback reference when timm is absent)."""

    def __init__(self, dim: int, heads: int, ratio: float) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * ratio)), nn.GELU(), nn.Linear(int(dim * ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.n1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class PlainViT(nn.Module):
    """A plain ViT (16×16 patches, class token) used when timm is not installed."""

    def __init__(self, dim: int = 240, depth: int = 12, heads: int = 4, classes: int = 1000) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, 16)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 197, dim))
        self.blocks = nn.Sequential(*[_Block(dim, heads, 4.0) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])


def reference_vit() -> tuple[nn.Module, str]:
    """timm's ViT of about the T subnet's size (embed 240, depth 12, 4 heads), else ours."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return PlainViT(), "plain PyTorch ViT (timm not installed) E240 d12 h4"
    import timm
    return (VisionTransformer(img_size=224, patch_size=16, embed_dim=240, depth=12, num_heads=4,
                              mlp_ratio=4.0, num_classes=1000),
            f"timm {timm.__version__} VisionTransformer E240 d12 h4")


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _flops(fn: Callable[[], torch.Tensor]) -> int:
    """Forward FLOPs (torch's counter over-counts grouped-conv backward, so forward only).

    Attention runs on SDPA's math backend while counting: the counter does not see the
    matmuls inside the fused CPU attention kernel (timm's ViT would lose its attention).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def _time_steps(steps: dict[str, Callable[[], None]], reps: int) -> list[dict[str, float]]:
    """Seconds per call of each step in each round, after one warm-up call each; rounds
    interleave the models, in reversed order every other round, so a load change on a shared
    machine and any order effect hit all of them alike."""
    for f in steps.values():
        f()
    rounds = []
    for i in range(reps):
        r = {}
        for k in (list(steps) if i % 2 == 0 else list(reversed(steps))):
            t0 = time.perf_counter()
            steps[k]()
            r[k] = time.perf_counter() - t0
        rounds.append({k: r[k] for k in steps})
    return rounds


def cpu_compare(batch: int, size: int, reps: int) -> str:
    """Forward+backward of the supernet (T active), the exported T model and the reference."""
    torch.manual_seed(0)
    space = build_space("tiny", tasks=("cls",))
    cand = load_subnet(TINY, space)
    sup = build_supernet(space).train()
    sup.set_arch(cand)
    exported = export_subnet(sup, cand, task="cls").train()
    space2 = build_space("tiny", tasks=("cls", "seg"))
    sup2 = build_supernet(space2).train()
    sup2.set_arch(cand)  # no sharing genes: learned scores, straight-through mixing
    ref, ref_name = reference_vit()
    ref.train()
    x = torch.randn(batch, 3, size, size)
    exp_key, sup_key, stem_key = ("exported plain T (cls)", "supernet, T active (cls)",
                                  "exported T: stem only (3 convs at 112²)")
    models: dict[str, Callable[[], torch.Tensor]] = {
        sup_key: lambda: sup(x, "cls"),
        exp_key: lambda: exported(x),
        "2-task supernet, T active, learned sharing (cls)": lambda: sup2(x, "cls"),
        ref_name: lambda: ref(x),
        stem_key: lambda: exported.stem(x),
    }
    params = {sup_key: space.count_params(cand)["cls"], exp_key: _n(exported),
              "2-task supernet, T active, learned sharing (cls)": space.count_params(cand)["cls"],
              ref_name: _n(ref), stem_key: _n(exported.stem)}

    def step(f: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            y = f().float()
            (y.logsumexp(1) if y.dim() == 2 else y).mean().backward()
        return run

    flops = {k: _flops(f) for k, f in models.items()}
    rounds = _time_steps({k: step(f) for k, f in models.items()}, reps)
    for m in (sup, exported, sup2, ref):
        m.zero_grad(set_to_none=True)
    times = {k: min(r[k] for r in rounds) for k in models}
    # paired ratios (same round) are robust to load changes between rounds; report the median
    ratio = {k: statistics.median(r[k] / r[exp_key] for r in rounds) for k in models}
    rows = []
    for k in models:
        rows.append([k, f"{params[k] / 1e6:.2f}M", f"{flops[k] / 1e9:.2f}", f"{times[k] * 1e3:.0f}",
                     f"{ratio[k]:.2f}x", f"{times[k] / params[k] * 1e9:.1f}",
                     f"{times[k] / (3 * flops[k]) * 1e12:.1f}"])
    r_sup = ratio[sup_key]
    per_param = (1 / ratio[ref_name]) * params[ref_name] / params[exp_key]
    per_flop = (1 / ratio[ref_name]) * flops[ref_name] / flops[exp_key]
    fpp = flops[exp_key] / params[exp_key] / (flops[ref_name] / params[ref_name])
    # the exported model without its stem: time, params and FLOPs of the stem taken out
    t_rest = statistics.median(r[exp_key] - r[stem_key] for r in rounds)
    t_ref = statistics.median(r[ref_name] for r in rounds)
    rest_param = t_rest / (params[exp_key] - params[stem_key]) / (t_ref / params[ref_name])
    rest_flop = t_rest / (flops[exp_key] - flops[stem_key]) / (t_ref / flops[ref_name])
    body = table(["model", "params", "GFLOP fwd", "ms / step (min)", "vs exported (median paired)",
                  "ns / param", "ps / (3·fwd FLOP)"], rows)
    body += (f"\n\nBatch {batch} at {size}², forward+backward, one warm-up step each, then {reps} "
             f"interleaved rounds (order reversed every other round); min per model, paired "
             f"ratios within a round (median). {torch.get_num_threads()} thread(s) (one thread "
             f"keeps ratios steady on a shared machine). FLOPs: torch's FlopCounterMode, forward, "
             f"attention counted on SDPA's math backend.\n\n"
             f"- supernet / exported: **{r_sup:.2f}x** (target ≤ 1.3x: "
             f"{'met' if r_sup <= 1.3 else 'MISSED'})\n"
             f"- exported / reference per parameter: **{per_param:.2f}x** (target ≤ 1.2x: "
             f"{'met' if per_param <= 1.2 else 'MISSED'}); per FLOP: **{per_flop:.2f}x**.\n"
             f"- ViT-MVT spends {fpp:.2f}x the reference's FLOPs per parameter: its convolutional "
             f"stem (64 channels at 112²) holds {params[stem_key] / params[exp_key]:.1%} of the "
             f"parameters and {flops[stem_key] / flops[exp_key]:.0%} of the FLOPs, and takes "
             f"{statistics.median(r[stem_key] / r[exp_key] for r in rounds):.0%} of the step. "
             f"Without the stem the exported model is at {rest_param:.2f}x the reference per "
             f"parameter and {rest_flop:.2f}x per FLOP, so the per-parameter gap is the "
             f"architecture's stem, not overhead.\n")
    return body


def counting_rate(n: int = 20_000) -> str:
    """Candidates per second of ``count_params`` on random candidates of each space."""
    rows = []
    for name in ("tiny", "small", "base"):
        for tasks in (("cls",), ("cls", "seg")):
            space = build_space(name, tasks=tasks)
            rng = random.Random(0)
            cands = [space.sample(rng) for _ in range(n)]
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for c in cands:
                    space.count_params(c)
                best = min(best, time.perf_counter() - t0)
            rows.append([name, len(tasks), f"{n / best:,.0f}"])
    space = build_space("tiny")
    sup = build_supernet(space)
    rng = random.Random(1)
    cands = [space.sample(rng) for _ in range(200)]
    t0 = time.perf_counter()
    for c in cands:
        sup.set_arch(c)
    per = (time.perf_counter() - t0) / len(cands)
    return (table(["space", "tasks", "candidates / s"], rows)
            + f"\n\nTarget ≥ 50,000 candidates/s (exact count incl. sharing). "
              f"`set_arch` on the 2-task T supernet: {per * 1e6:.0f} µs.\n")


def gpu_training_run(dev: torch.device, tasks: tuple[str, ...], random_arch: bool, batch: int, steps: int,
                     size: int) -> tuple[float, float]:
    """Seconds per timed training step, and peak GiB, of one supernet setting (freed on return)."""
    torch.manual_seed(0)
    space = build_space("tiny", tasks=tasks)
    net = build_supernet(space, drop_path_rate=0.1).to(dev).train()
    cand = {k: v for k, v in load_subnet(TINY, space).items() if not k.startswith("share.")}
    net.set_arch(cand)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    seg = torch.randint(0, 150, (batch, size, size), device=dev)
    rng = random.Random(0)

    def step() -> None:
        if random_arch:
            net.set_arch({k: v for k, v in space.sample(rng).items() if not k.startswith("share.")})
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = net.forward_all(x)
            loss = nn.functional.cross_entropy(out["cls"], y)
            if "seg" in out:
                loss = loss + nn.functional.cross_entropy(out["seg"], seg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / steps, torch.cuda.max_memory_allocated(dev) / 2**30


def gpu_training(device: str, batch: int, steps: int, size: int = 224) -> str:
    """bf16 autocast images/s of a supernet training step (AdamW), T subnet and random subnets."""
    dev = torch.device(device)
    rows = []
    for label, tasks, random_arch in (("T subnet, cls", ("cls",), False),
                                      ("T subnet, cls+seg, learned sharing", ("cls", "seg"), False),
                                      ("random subnet per step, cls+seg", ("cls", "seg"), True)):
        dt, peak_gib = gpu_training_run(dev, tasks, random_arch, batch, steps, size)
        rows.append([label, batch, f"{dt * 1e3:.1f}", f"{batch / dt:,.0f}", f"{peak_gib:.1f}"])
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    return (table(["training step", "batch", "ms / step", "images / s", "peak GiB"], rows)
            + f"\n\nDevice: {torch.cuda.get_device_name(dev)}; bf16 autocast, AdamW, {size}², "
              f"{steps} timed steps after 3 warm-up steps (images/s counts each image once for all tasks).\n")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks and write their section of BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="CPU: batch 2 and 3 reps (busy machine)")
    ap.add_argument("--batch", type=int, default=None, help="batch (CPU default 8, GPU 128)")
    ap.add_argument("--reps", type=int, default=None, help="CPU timed repetitions (default 5)")
    ap.add_argument("--steps", type=int, default=20, help="GPU timed training steps")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for the comparison")
    ap.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    args = ap.parse_args(argv)
    cmd = "python benchmarks/bench_vit_mvt.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        body = gpu_training("cuda", args.batch or 128, args.steps)
        name, title = "vit_mvt_gpu", "ViT-MVT supernet training throughput (GPU, bf16)"
    else:
        torch.set_num_threads(args.threads)
        batch = args.batch or (2 if args.quick else 8)
        reps = args.reps or (3 if args.quick else 5)
        body = ("### Supernet vs exported vs plain ViT (CPU)\n\n" + cpu_compare(batch, 224, reps)
                + "\n### Parameter counting\n\n" + counting_rate())
        name, title = "vit_mvt", "ViT-MVT search space (CPU)"
    print(body)
    if not args.no_write:
        write_section(name, title, body, cmd.strip())


if __name__ == "__main__":
    main()
