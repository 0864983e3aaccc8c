"""The multi-task OpenMMLab model (one ViT-MVT-T backbone, ImageClassifier + Mask R-CNN + UPerNet
heads at the shipped settings) vs. the three single-task models: parameters, and the time for
one image through all three tasks.

The multi-task model is configs/mtl/vit_mvt_tiny_cls_det_seg_merged.py with the released T subnet
and every linear shared: cls and seg run the whole backbone once together, det shares it up to its
own first conv aggregation block (after block 2, as ViT-MVT's detection networks) and then runs its
own path. Each single-task model is that task's library model with its own plain T backbone
(``ViTMVTSubnetBackbone``, as configs/nas/vit_mvt_tiny/task_*.py) holding the very same weights,
so both sides compute the same predictions. Times are medians of interleaved rounds.

    python benchmarks/bench_mm_multitask.py               # CPU, one thread, 224², writes BENCHMARKS.md
    python benchmarks/bench_mm_multitask.py --size 512    # another image side
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._report import table, write_section  # noqa: E402

CONFIG = ROOT / "configs" / "mtl" / "vit_mvt_tiny_cls_det_seg_merged.py"
T_SUBNET = ROOT / "configs" / "nas" / "vit_mvt_tiny" / "subnet.yaml"


def build_models() -> tuple[Any, dict[str, Any]]:
    """The multi-task model and, per task, its single-task model with the same weights."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import automtl.mm.register  # noqa: F401
    from automtl.mm.scopes import build_in_scope

    cfg = Config.fromfile(str(CONFIG))
    cfg.model.backbone.subnet = str(T_SUBNET)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmdet"):
        multi = MODELS.build(cfg.model).eval()
    shared = {k.replace(".shared.", "."): v for k, v in multi.backbone.state_dict().items()
              if not k.startswith("aggregation.")}
    singles = {}
    for task, task_cfg in cfg.model.tasks.items():
        one = copy.deepcopy(dict(task_cfg))
        agg = multi.backbone.aggregation[task] if task in multi.backbone.aggregation else {}
        one["backbone"] = dict(type="ViTMVTSubnetBackbone", subnet=str(T_SUBNET), size="tiny",
                               out_indices=tuple(multi.backbone.out_indices[task]),
                               final_norm=multi.backbone.final_norm[task],
                               conv_aggregation=tuple(int(i) for i in agg) or False)
        model = build_in_scope(multi.scopes[task], one).eval()
        own_agg = {f"aggregation.{k}": v for k, v in agg.state_dict().items()} if agg else {}
        model.backbone.load_state_dict({**shared, **own_agg})
        own = {k: v for k, v in multi.task_model(task).state_dict().items() if not k.startswith("backbone.")}
        missing, unexpected = model.load_state_dict(own, strict=False)
        assert not unexpected and all(k.startswith("backbone.") for k in missing), (missing, unexpected)
        singles[task] = model
    return multi, singles


def check_same(a: Any, b: Any, task: str) -> None:
    """Both sides predicted the same (class scores, masks, boxes)."""
    for key in ("pred_score", "pred_sem_seg", "pred_instances"):
        if key in a:
            va, vb = getattr(a, key), getattr(b, key)
            va = va if isinstance(va, torch.Tensor) else va.get("data", va.get("bboxes"))
            vb = vb if isinstance(vb, torch.Tensor) else vb.get("data", vb.get("bboxes"))
            if not torch.equal(va, vb):
                raise AssertionError(f"{task}: the multi-task and single-task {key} differ")


def params(module: torch.nn.Module) -> int:
    """Parameters (each shared tensor once)."""
    return sum(p.numel() for p in module.parameters())


def rounds(steps: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds per call of each step, interleaved (order reversed every other round)."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    names = list(steps)
    with torch.no_grad():
        for fn in steps.values():
            fn()  # warm-up
        for r in range(reps):
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="image side (default 224, the T subnet's)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from automtl.mm.multitask import default_samples

    multi, singles = build_models()
    x = torch.randn(1, 3, args.size, args.size)
    samples = {t: default_samples(multi.scopes[t], t, x) for t in multi.tasks}
    with torch.no_grad():  # same weights, same predictions
        got = multi.predict_all(x, copy.deepcopy(samples))
        for t, m in singles.items():
            check_same(got[t][0], m.predict(x, copy.deepcopy(samples[t]))[0], t)
    steps: dict[str, Callable[[], object]] = {
        "multi": lambda: multi.predict_all(x, copy.deepcopy(samples)),
        "singles": lambda: [m.predict(x, copy.deepcopy(samples[t])) for t, m in singles.items()],
        "multi_backbone": lambda: multi.backbone.forward_all(x),
        "single_backbones": lambda: [m.backbone(x) for m in singles.values()],
    }
    sec = rounds(steps, args.reps)
    p_multi, p_singles = params(multi), sum(params(m) for m in singles.values())
    b_multi, b_singles = params(multi.backbone), sum(params(m.backbone) for m in singles.values())
    rows = [
        ["parameters, whole models", f"{p_multi:,}", f"{p_singles:,}", f"{p_multi / p_singles:.2f}"],
        ["parameters, backbones", f"{b_multi:,}", f"{b_singles:,}", f"{b_multi / b_singles:.2f}"],
        [f"one {args.size}² image through cls + det + seg (ms)", f"{1e3 * sec['multi']:.0f}",
         f"{1e3 * sec['singles']:.0f}", f"{sec['multi'] / sec['singles']:.2f}"],
        ["backbone part of it (ms)", f"{1e3 * sec['multi_backbone']:.0f}",
         f"{1e3 * sec['single_backbones']:.0f}", f"{sec['multi_backbone'] / sec['single_backbones']:.2f}"],
    ]
    heads_ms = 1e3 * (sec["singles"] - sec["single_backbones"])
    ratio = sec["multi"] / sec["singles"]
    verdict = f"met: {ratio:.2f}×" if ratio <= 0.7 else f"missed: {ratio:.2f}×"
    body = "\n".join([
        "The multi-task model (configs/mtl/vit_mvt_tiny_cls_det_seg_merged.py: the released T subnet, "
        "every linear shared; cls and seg run the backbone once together, det shares blocks 0-2 and then "
        "runs its own path after its first conv aggregation block) against the three single-task "
        "models (ImageClassifier, Mask R-CNN, UPerNet at the shipped head settings, each with its own "
        "plain T backbone holding the same weights; both sides predict the same). "
        f"Median of {args.reps} interleaved rounds, {args.threads} thread(s), batch 1, random weights; "
        "the machine was shared with other jobs.",
        "",
        table(["", "multi-task", "3 single-task", "ratio"], rows),
        "",
        f"Target for the time: ≤ 0.70× the three separate models ({verdict}). Sharing only removes "
        f"backbone work: the backbone part is {sec['multi_backbone'] / sec['single_backbones']:.2f}×, "
        f"while the three heads, unchanged by sharing, take {heads_ms:.0f} of the "
        f"{1e3 * sec['singles']:.0f} ms of the single-task models.",
    ])
    print(body)
    if not args.no_write:
        cmd = "OMP_NUM_THREADS=1 python benchmarks/bench_mm_multitask.py" + \
              (f" --size {args.size}" if args.size != 224 else "")
        write_section("mm_multitask", "One multi-task model across mmpretrain, mmdet and mmseg (CPU)", body, cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
