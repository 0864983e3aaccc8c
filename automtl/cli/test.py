"""Evaluate trained weights: of an AutoMTL config on its validation data under a fixed policy,
or of an OpenMMLab config (mmpretrain / mmdet / mmseg layout) on its test set.

AutoMTL configs: the policy is ``--policy PATH`` or the ``policy.json`` beside the weights (a
train run writes it into its work dir); prints ``{task: {metric: value}}`` (and Δm with
``--baseline``) as JSON; ``--eval`` picks metrics by name.
Delta-sharing configs (a ``delta`` section): the same report for the trained deltas, at
inference with the config's activation thresholds (the policy: ``--policy`` or the config's).
OpenMMLab configs: ``--eval accuracy|bbox|segm|mIoU`` maps onto mmengine evaluators (Accuracy,
CocoMetric, IoUMetric); prints ``{metric key: value}`` (``accuracy/top1``, ``coco/bbox_mAP``,
``coco/segm_mAP``, ``mIoU``); ``--out x.pkl`` dumps the predictions, ``--out x.json`` the metrics.

Examples:
    python -m automtl test configs/automtl/synthetic_tinyresnet.py work_dirs/tiny/post_train.pt
    python -m automtl test CONFIG CKPT --eval mIoU abs_err --out work_dirs/tiny/test.json
    python -m automtl test configs/automtl/synthetic_delta_vit_mvt.py work_dirs/delta_vit/delta_act_train.pt
    python -m automtl test configs/nas/vit_mvt_tiny/task_seg.py work_dirs/seg/iter_160000.pth --eval mIoU
    python -m automtl test configs/nas/vit_mvt_tiny/task_det.py CKPT --eval bbox segm --tta
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from automtl.cli._common import add_config_options, report_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m automtl test``."""
    parser.add_argument("config", help="the config the weights were trained with")
    parser.add_argument("checkpoint", help="weights file (e.g. <work_dir>/post_train.pt)")
    parser.add_argument("--policy", default=None,
                        help="policy JSON (default: policy.json beside the checkpoint or in its parent; "
                             "delta configs: the config's delta policy)")
    parser.add_argument("--eval", nargs="+", default=None, metavar="METRIC",
                        help="report only these metrics (default: every metric of every task)")
    parser.add_argument("--baseline", default=None, help="single-task baseline JSON: also report Δm")
    parser.add_argument("--out", default=None,
                        help="also write the results as JSON to this file (OpenMMLab configs: a .pkl path "
                             "dumps the predictions instead)")
    parser.add_argument("--show-dir", default=None, help="OpenMMLab configs: save drawn predictions here")
    parser.add_argument("--tta", action="store_true",
                        help="OpenMMLab configs: test-time augmentation (the config's tta_model / tta_pipeline)")
    parser.add_argument("--launcher", choices=("none", "pytorch", "slurm", "mpi"), default="none",
                        help="OpenMMLab configs: how processes were launched (pytorch: torchrun)")
    add_config_options(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the results."""
    return report_errors(lambda: _test(args))


def find_policy(checkpoint: str, given: str | None) -> Path:
    """``given``, else ``policy.json`` next to ``checkpoint`` or one folder up."""
    from automtl.errors import ConfigError

    if given is not None:
        return Path(given)
    here = Path(checkpoint).resolve().parent
    for folder in (here, here.parent):
        if (folder / "policy.json").is_file():
            return folder / "policy.json"
    raise ConfigError(f"no policy.json beside {checkpoint} or in its parent; pass --policy",
                      key="--policy")


def select(results: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
    """Keep the metrics named in ``wanted`` (all when None); unknown names are refused."""
    from automtl.errors import ConfigError

    if not wanted:
        return results
    known = sorted({m for r in results.values() if isinstance(r, dict) for m in r})
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; this config reports {known}", key="--eval")
    return {t: {m: v for m, v in r.items() if m in wanted} for t, r in results.items()
            if isinstance(r, dict) and any(m in wanted for m in r)}


def _test(args: argparse.Namespace) -> int:
    from automtl.config import config_kind, load_config

    kind = config_kind(load_config(args.config))
    if kind == "mm":
        return _test_mm(args)
    return _test_automtl(args, delta=kind == "delta")


def _test_mm(args: argparse.Namespace) -> int:
    from automtl.cli._common import default_work_dir
    from automtl.mm.runner import test_mm

    metrics = test_mm(args.config, args.checkpoint, work_dir=default_work_dir(args.config, args.work_dir),
                      evals=args.eval, out=args.out, show_dir=args.show_dir, launcher=args.launcher,
                      cfg_options=args.cfg_options, tta=args.tta, seed=args.seed)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def _test_automtl(args: argparse.Namespace, *, delta: bool = False) -> int:
    """Per-task metrics of an AutoMTL config's weights under its policy, or with ``delta`` of a
    delta-sharing config's trained deltas (at inference, with the activation thresholds)."""
    import torch

    from automtl.errors import ConfigError

    for flag, value in (("--show-dir", args.show_dir), ("--tta", args.tta), ("--work-dir", args.work_dir)):
        if value:
            raise ConfigError("applies to OpenMMLab configs only", key=flag, path=args.config)

    from automtl.config import load_config
    from automtl.data import build_data
    from automtl.io import atomic_write_text
    from automtl.metrics import default_metrics
    from automtl.train.evaluation import as_baseline, run_metrics

    cfg = load_config(args.config, args.cfg_options)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    plan, model, policy = (_load_delta if delta else _load_automtl)(args, cfg, dev)
    _, val = build_data(plan.data, plan.tasks, seed=plan.seed)
    metrics = default_metrics(plan.tasks, num_classes=plan.model.get("num_classes"))
    model.eval()
    results: dict[str, Any] = {}
    with torch.no_grad():
        for task in plan.tasks:
            fwd = lambda x, t=task: model(x, task=t, stage="fixed", policy=policy)
            results[task] = run_metrics(fwd, val[task], metrics[task], dev, task)
    if args.baseline:
        results["delta_m"] = as_baseline(args.baseline).delta(results)
    results = select(results, args.eval)
    text = json.dumps(results, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


def _load_automtl(args: argparse.Namespace, cfg: Any, dev: Any) -> tuple[Any, Any, Any]:
    """The checked config, its model with the weights loaded, and the policy (``--policy`` or
    ``policy.json`` beside the weights)."""
    from automtl.cli.run_automtl import check_config
    from automtl.cli.weights import load_model_weights
    from automtl.supernet import Policy
    from automtl.supernet.registration import build_model

    plan = check_config(cfg, path=args.config)
    if args.seed is not None:
        plan.seed = args.seed
    model: Any = build_model(plan.model, plan.tasks).to(dev)
    load_model_weights(model, args.checkpoint, map_location=dev)
    return plan, model, Policy.load(find_policy(args.checkpoint, args.policy), model=model)


def _load_delta(args: argparse.Namespace, cfg: Any, dev: Any) -> tuple[Any, Any, Any]:
    """The checked delta config, its model with the trained deltas loaded (any step's weights:
    dense or sparse ΔW), the delta policy (``--policy`` or the config's) and the config's
    inference thresholds set, as the train run evaluates it."""
    from automtl.cli.run_delta import build_delta_model, check_delta_config
    from automtl.cli.weights import load_model_weights
    from automtl.supernet import Policy
    from automtl.train.delta_phases import set_thresholds

    plan = check_delta_config(cfg, path=args.config)
    if args.seed is not None:
        plan.seed = args.seed
    model, policy = build_delta_model(plan)
    model.to(dev)
    load_model_weights(model, args.checkpoint, map_location=dev)
    if args.policy is not None:
        policy = Policy.load(args.policy, model=model)
    set_thresholds(model, policy, plan.delta.threshold, plan.delta.thresholds)
    model.set_policy(policy)
    return plan, model, policy
