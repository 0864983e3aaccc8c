#!/usr/bin/env python
"""Draw N policies from policy-trained logits, keep those within a parameter budget, optionally
score them on validation data, and write the chosen policy JSON and its picture.

Example:
    python tools/sample_policy.py configs/automtl/synthetic_tinyresnet.py \\
        work_dirs/synthetic_tinyresnet/alter_train_with_reg.pt --n 50 --budget 0.6 --score --out work_dirs/pick
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args = parser.parse_args(argv)
    from automtl.errors import AutoMTLError
    from automtl.train.sampling import sample_from_config

    try:
        report = sample_from_config(args.config, args.weights, args.out, n=args.n, budget=args.budget,
                                    max_params=args.max_params, score=args.score or args.baseline is not None,
                                    seed=args.seed, temperature=args.temperature, baseline=args.baseline,
                                    device=args.device)
    except AutoMTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("seed\tparams\tfraction\tscore\tchosen")
    for row in report.rows():
        print("\t".join(map(str, row)))
    print(f"chosen: seed {report.chosen.seed}, {report.chosen.params} params -> {Path(args.out) / 'policy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
