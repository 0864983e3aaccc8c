"""Evaluate trained weights of an AutoMTL config on its validation data, under a fixed policy.

The policy is ``--policy PATH`` or the ``policy.json`` beside the weights (a train run writes
it into its work dir). Prints ``{task: {metric: value}}`` (and Δm with ``--baseline``) as JSON.

Examples:
    python -m automtl test configs/automtl/synthetic_tinyresnet.py work_dirs/tiny/post_train.pt
    python -m automtl test CONFIG CKPT --eval mIoU abs_err --out work_dirs/tiny/test.json
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
                        help="policy JSON (default: policy.json beside the checkpoint or in its parent)")
    parser.add_argument("--eval", nargs="+", default=None, metavar="METRIC",
                        help="report only these metrics (default: every metric of every task)")
    parser.add_argument("--baseline", default=None, help="single-task baseline JSON: also report Δm")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file")
    add_config_options(parser, work_dir=False)


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
    import torch

    from automtl.cli.run_automtl import check_config
    from automtl.cli.weights import load_model_weights
    from automtl.config import load_config
    from automtl.data import build_data
    from automtl.io import atomic_write_text
    from automtl.metrics import default_metrics
    from automtl.supernet import Policy
    from automtl.supernet.registration import build_model
    from automtl.train.evaluation import as_baseline, run_metrics

    plan = check_config(load_config(args.config, args.cfg_options), path=args.config)
    if args.seed is not None:
        plan.seed = args.seed
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model: Any = build_model(plan.model, plan.tasks).to(dev)
    load_model_weights(model, args.checkpoint, map_location=dev)
    policy = Policy.load(find_policy(args.checkpoint, args.policy), model=model)
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
