#!/usr/bin/env python
"""Train from a config: AutoMTL's phases (pre-train, policy-train, sample, post-train, evaluate),
or, for a config with a ``supernet_train`` section, an elastic supernet for search.

Example:
    python tools/train.py configs/automtl/synthetic_tinyresnet.py --work-dir work_dirs/tiny
    torchrun --nproc_per_node=2 tools/train.py configs/automtl/synthetic_tinyresnet.py --resume
    python tools/train.py configs/supernet/vit_mvt_micro_synthetic.py   # then tools/search.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="mmengine-style .py config (see configs/automtl/)")
    parser.add_argument("--work-dir", help="output folder (default: work_dirs/<config name>)")
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="skip finished phases and continue an interrupted one from its checkpoint")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when present)")
    args = parser.parse_args(argv)
    from automtl.errors import AutoMTLError
    from automtl.search.supernet_run import is_supernet_config, read_config, run_supernet_config
    from automtl.train.runner import run_config

    work_dir = args.work_dir or str(Path("work_dirs") / Path(args.config).stem)
    try:
        cfg = read_config(args.config)
        if is_supernet_config(cfg):
            out = run_supernet_config(cfg, work_dir=work_dir, seed=args.seed, resume=args.resume,
                                      device=args.device)
            print(json.dumps(out, indent=2))
            return 0
        out = run_config(args.config, work_dir=work_dir, seed=args.seed, resume=args.resume, device=args.device)
    except AutoMTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(json.dumps({"results": out.get("results"), "params": out.get("params"), "work_dir": work_dir},
                     indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
