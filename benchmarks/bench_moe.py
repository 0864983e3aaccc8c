"""M3ViT mixture-of-experts layer: reordered dispatch vs the per-token loop and vs a dense FFN
with the same active parameters, and per-task pruning / FLOPs of an MoE ViT at ViT-T width.

    python benchmarks/bench_moe.py                 # CPU, one thread, writes BENCHMARKS.md
    python benchmarks/bench_moe.py --device cuda   # the same table on a GPU (device named)
"""
from __future__ import annotations

import argparse
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
from search_spaces.vit_mvt import (  # noqa: E402
    MoEFFN,
    SpaceConfig,
    build_space,
    build_supernet,
    export_subnet,
    moe_inference_report,
    prune_task_experts,
)
from search_spaces.vit_mvt import _moe_dispatch as D  # noqa: E402
from search_spaces.vit_mvt._moe_gate import noisy_top_k  # noqa: E402

WIDTH, TOKENS, BATCH, EXPERTS, TOP_K = 192, 196, 8, 16, 4   # ViT-T width, 14×14 tokens
TASKS = ("seg", "depth")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _rounds(steps: dict[str, Callable[[], object]], reps: int, dev: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each step, interleaved (reversed every other round) after a warm-up,
    so load changes hit every step alike. On CPU the clock is this thread's CPU time (a shared
    machine's time slicing does not count); on a GPU, synchronised wall time."""
    clock = time.thread_time if dev.type == "cpu" else time.perf_counter
    for f in steps.values():
        f()
    out: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(reps):
        for k in (list(steps) if i % 2 == 0 else list(reversed(steps))):
            _sync(dev)
            t0 = clock()
            steps[k]()
            _sync(dev)
            out[k].append(clock() - t0)
    return out


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a / b (each round's two timings taken side by side)."""
    return statistics.median(x / y for x, y in zip(a, b))


def layer_compare(dev: torch.device, reps: int) -> str:
    """The MoE layer (routing included) vs the per-token loop and a dense FFN of the same
    active parameters (hidden = k · expert hidden)."""
    torch.manual_seed(0)
    moe = MoEFFN(WIDTH, WIDTH, EXPERTS, TOP_K, TASKS).to(dev)
    with torch.no_grad():  # a trained-like router: routing that depends on the token
        for p in moe.router.parameters():
            p.normal_(0, 0.2)
    dense = nn.Sequential(nn.Linear(WIDTH, TOP_K * WIDTH), nn.GELU(), nn.Linear(TOP_K * WIDTH, WIDTH)).to(dev)
    x = torch.randn(BATCH, TOKENS, WIDTH, device=dev)
    flat = x.reshape(-1, WIDTH)
    moe.eval()
    with torch.no_grad():
        routing = noisy_top_k(moe.router.logits(flat, "seg", WIDTH, EXPERTS), TOP_K)
    active = TOP_K * moe.expert_params() + EXPERTS * WIDTH
    dense_params = sum(p.numel() for p in dense.parameters())

    def moe_fwd() -> object:
        with torch.no_grad():
            return moe.eval()(x, "seg")

    def dense_fwd() -> object:
        with torch.no_grad():
            return dense.eval()(x)

    def moe_train() -> None:
        moe.train()
        y = moe(x, "seg")
        (aux,) = moe.auxiliary_losses().values()
        (y.sum() + aux).backward()
        moe.reset_auxiliary()

    def dense_train() -> None:
        dense.train()(x).sum().backward()

    def looped_fwd() -> object:
        limit, D.PAD_LIMIT = D.PAD_LIMIT, 0.0
        try:
            return moe_fwd()
        finally:
            D.PAD_LIMIT = limit

    counts_t = torch.bincount(routing.idx.reshape(-1), minlength=EXPERTS)
    cap = int(counts_t.max())
    xp = torch.randn(EXPERTS, cap, WIDTH, device=dev)

    def gemms_only() -> object:  # the experts' share: two padded batched GEMMs, biases, GELU
        with torch.no_grad():
            h = torch.nn.functional.gelu(torch.bmm(xp, moe.w1.transpose(1, 2)).add_(moe.b1.unsqueeze(1)))
            return torch.bmm(h, moe.w2.transpose(1, 2)).add_(moe.b2.unsqueeze(1))

    fwd = _rounds({"moe": moe_fwd, "looped": looped_fwd, "gemms": gemms_only, "dense": dense_fwd},
                  reps, dev)
    train = _rounds({"moe": moe_train, "dense": dense_train}, max(reps // 2, 3), dev)
    # the per-token loop is slow: time it on a slice of the tokens and scale (linear in tokens)
    n_slice = 392 if dev.type == "cpu" else 196
    sl = slice(0, n_slice)
    ws = (moe.w1, moe.b1, moe.w2, moe.b2)

    def per_token() -> object:
        with torch.no_grad():
            return D.dispatch_per_token(flat[sl], routing.idx[sl], routing.gates[sl], *ws)

    loop = [t * flat.shape[0] / n_slice for t in _rounds({"loop": per_token}, 3, dev)["loop"]]
    med = {k: statistics.median(v) for k, v in fwd.items()}
    tr = {k: statistics.median(v) for k, v in train.items()}
    speedup = statistics.median(loop) / med["moe"]
    vs_dense = _paired(fwd["moe"], fwd["dense"])
    best = min(fwd["moe"]) / min(fwd["dense"])
    vs_dense_train = _paired(train["moe"], train["dense"])
    rows = [
        ["MoE layer, reordered dispatch (padded batched GEMMs)", f"{active:,}", f"{med['moe'] * 1e3:.1f}",
         f"{tr['moe'] * 1e3:.1f}"],
        ["MoE layer, reordered dispatch (one GEMM pair per expert)", f"{active:,}",
         f"{med['looped'] * 1e3:.1f}", "-"],
        ["  of which the experts' GEMMs + GELU (padded)", "", f"{med['gemms'] * 1e3:.1f}", "-"],
        ["per-token loop (same routing)", f"{active:,}", f"{statistics.median(loop) * 1e3:.0f}", "-"],
        [f"dense FFN {WIDTH}→{TOP_K * WIDTH}→{WIDTH} (same active parameters)", f"{dense_params:,}",
         f"{med['dense'] * 1e3:.1f}", f"{tr['dense'] * 1e3:.1f}"],
    ]
    counts = moe.last_stats.counts if moe.last_stats is not None else ()
    clock = "CPU ms" if dev.type == "cpu" else "ms"
    body = table(["layer", "active params", f"{clock} forward (median)", f"{clock} fwd+bwd (median)"], rows)
    body += (f"\n\n{BATCH}×{TOKENS} tokens of width {WIDTH}, E={EXPERTS}, k={TOP_K}, expert hidden "
             f"{WIDTH}; routing included; {reps} interleaved rounds (fwd+bwd: {len(train['moe'])}), "
             f"per-token loop timed on {n_slice} tokens and scaled. Tokens per expert "
             f"{min(counts)}–{max(counts)}.\n\n"
             f"- reordered vs per-token loop: **{speedup:.0f}× faster** (target ≥ 10×: "
             f"{'met' if speedup >= 10 else 'MISSED'}).\n"
             f"- reordered vs dense FFN, forward: **{vs_dense:.2f}×** the time (median of paired "
             f"rounds; target ≤ 1.5×: {'met' if vs_dense <= 1.5 else 'MISSED'}; fastest round of "
             f"each: {best:.2f}×); forward+backward "
             f"(with the balance loss): {vs_dense_train:.2f}×. The experts' GEMMs and GELU take "
             f"{_paired(fwd['gemms'], fwd['dense']):.2f}× the dense FFN's time; the rest is routing "
             f"(softmax, top-k), sorting the routes, the two gathers and the gate-weighted sum.\n")
    return body


def _moe_vit(width: int = WIDTH) -> tuple[object, dict]:
    """A ViT-MVT at ViT-T width with M3ViT's placement (MoE in blocks 1, 3, …, 11)."""
    cfg = SpaceConfig("m3vit_t_bench", depths=(12,), embeds=(width,), heads=(3,), mlp_ratios=(4.0,),
                      ffn_kinds=("dense", "moe"), ffn_layout=("dense", "moe") * 6,
                      num_experts=(EXPERTS,), top_ks=(TOP_K,), moe_mlp_ratio=1.0)
    space = build_space(cfg, tasks=TASKS, num_outputs={"seg": 40, "depth": 1})
    return space, space.smallest()


def pruning(dev: torch.device, images: int) -> str:
    """Per task: experts kept and touched, expert bytes read, FLOPs and parameters, pruned vs
    full (weights of a fresh supernet: untrained routers)."""
    torch.manual_seed(0)
    space, cand = _moe_vit()
    net = build_supernet(space).to(dev).eval()
    model = export_subnet(net, cand)
    calib = torch.randn(images, 3, 224, 224, device=dev)
    rows = []
    for task in TASKS:
        report = moe_inference_report(model, task, calib)
        pruned = prune_task_experts(model, task, calib)
        with torch.no_grad():
            same = torch.equal(pruned(calib), model.task_model(task)(calib))
        t = report.totals()
        rows.append([task, f"{t['experts_kept']:.0f}/{t['experts']:.0f}", f"{t['experts_touched']:.1f}",
                     f"{t['expert_bytes_read'] / 2**20:.2f}", f"{t['moe_flops'] / 1e6:.0f}",
                     f"{t['moe_flops_all_experts'] / 1e6:.0f}", f"{t['model_flops'] / 1e9:.3f}",
                     f"{report.params / 1e6:.2f}M → {report.pruned_params / 1e6:.2f}M",
                     "yes" if same else "NO"])
    counts = space.count_params(cand)
    active = space.count_active(cand)
    body = table(["task", "experts kept", "touched / image", "MiB expert weights read / image",
                  "MoE MFLOP / image (routed)", "MoE MFLOP / image (every expert)",
                  "model GFLOP / image", "task params (full → pruned)", "outputs unchanged"], rows)
    body += (f"\n\nViT-MVT blocks at ViT-T width (d {WIDTH}, 12 blocks, 3 heads), MoE in blocks 1, 3, "
             f"…, 11 (E={EXPERTS}, k={TOP_K}, expert hidden {WIDTH}), tasks {list(TASKS)}, {images} "
             f"random 224² calibration images, freshly initialised weights. Stored parameters "
             f"{counts['total']:,} (seg {counts['seg']:,}); active per token (seg) {active['seg']:,}. "
             f"Model FLOPs: torch's counter, forward; MoE FLOPs: routing + experts, analytic "
             f"(2 FLOPs per multiply-add). Pruning keeps each MoE layer's whole router and only the "
             f"experts the task selected on the calibration images; the routed FLOPs per image are "
             f"those of the full MoE model (k of E experts per token either way), the saving is in "
             f"stored and read expert weights, and it depends on how specialised the trained "
             f"routers are.\n")
    return body


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks and write the ``moe`` section of BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--reps", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--images", type=int, default=2, help="calibration images for pruning")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads")
    ap.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    ap.add_argument("--note", default="", help="a remark on the machine (e.g. shared, busy)")
    args = ap.parse_args(argv)
    cmd = "python benchmarks/bench_moe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    where = (f"GPU {torch.cuda.get_device_name(dev)}" if dev.type == "cuda"
             else f"CPU, {torch.get_num_threads()} thread(s)")
    body = (f"Device: {where}.{' ' + args.note if args.note else ''}\n\n"
            "### Reordered dispatch vs per-token loop vs dense FFN\n\n"
            + layer_compare(dev, args.reps)
            + "\n### Per-task pruning and inference report\n\n" + pruning(dev, args.images))
    print(body)
    if not args.no_write:
        name = "moe" if dev.type == "cpu" else "moe_gpu"
        write_section(name, f"M3ViT mixture-of-experts layers ({dev.type.upper()})", body, cmd.strip())


if __name__ == "__main__":
    main()
