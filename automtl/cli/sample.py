"""Draw N policies from policy-trained logits, keep those within a parameter budget, optionally
score them on the config's validation data, and write the chosen policy JSON and its picture.

Example:
    python -m automtl sample configs/automtl/synthetic_tinyresnet.py \\
        work_dirs/synthetic_tinyresnet/alter_train_with_reg.pt --n 50 --budget 0.6 --score --out work_dirs/pick
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from automtl.cli._common import report_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m automtl sample``."""
    parser.add_argument("config", help="the config the weights were trained with")
    parser.add_argument("weights", help="weights file of the policy-train phase (alter_train_with_reg.pt)")
    parser.add_argument("--n", type=int, default=20, help="policies to draw (default 20)")
    parser.add_argument("--budget", type=float, default=None,
                        help="max parameters as a fraction of one network per task (e.g. 0.6)")
    parser.add_argument("--max-params", type=int, default=None, help="max parameters (absolute)")
    parser.add_argument("--score", action="store_true", help="score candidates on the validation data")
    parser.add_argument("--baseline", default=None, help="single-task baseline JSON: score by Δm")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first sampling seed (default 0)")
    parser.add_argument("--out", default="work_dirs/sampled_policy", help="output folder")
    parser.add_argument("--device", default=None, help="cpu, cuda … (default: cuda when present)")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="override config values (e.g. data.data_root=DIR)")


def run(args: argparse.Namespace) -> int:
    """Sample, print one row per candidate and where the chosen policy went."""
    return report_errors(lambda: _sample(args))


def _sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        from automtl.errors import ConfigError

        raise ConfigError("must be >= 1", key="--n", value=args.n)
    report = sample_from_config(args.config, args.weights, args.out, n=args.n, budget=args.budget,
                                max_params=args.max_params,
                                score=args.score or args.baseline is not None, seed=args.seed,
                                temperature=args.temperature, baseline=args.baseline,
                                device=args.device, cfg_options=args.cfg_options)
    print("seed\tparams\tfraction\tscore\tchosen")
    for row in report.rows():
        print("\t".join(map(str, row)))
    print(f"chosen: seed {report.chosen.seed}, {report.chosen.params} params -> "
          f"{Path(args.out) / 'policy.json'}")
    return 0


def sample_from_config(config: str | os.PathLike[str], weights: str | os.PathLike[str],
                       out_dir: str | os.PathLike[str], *, n: int = 20, budget: float | None = None,
                       max_params: int | None = None, score: bool = False, seed: int = 0,
                       temperature: float = 1.0, baseline: Any = None, device: str | None = None,
                       cfg_options: Any = None) -> Any:
    """Rebuild the config's model, load policy-trained ``weights``, choose a policy (scored on
    the config's validation data when ``score``) and write it to ``out_dir``."""
    import torch

    from automtl.cli.run_automtl import check_config
    from automtl.cli.weights import load_model_weights
    from automtl.config import load_config
    from automtl.data import build_data
    from automtl.metrics import default_metrics
    from automtl.supernet.registration import build_model
    from automtl.train.policy_sampling import choose_policy, write_choice

    plan = check_config(load_config(config, cfg_options), path=str(config))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(plan.model, plan.tasks).to(dev)
    load_model_weights(model, weights, map_location=dev)
    val = metrics = None
    if score:
        _, val = build_data(plan.data, plan.tasks, seed=plan.seed)
        metrics = default_metrics(plan.tasks, num_classes=plan.model.get("num_classes"))
    report = choose_policy(model, n, seed=seed, budget=budget, max_params=max_params,
                           val_loaders=val, metrics=metrics, baseline=baseline, device=dev,
                           temperature=temperature)
    write_choice(report, out_dir)
    return report
