"""Train from a config: AutoMTL's phases (pre-train, policy-train, sample, post-train, evaluate),
for a config with a ``supernet_train`` section an elastic supernet for search, and for an
OpenMMLab config (mmpretrain / mmdet / mmseg layout, ``train_dataloader``) mmengine's Runner.

Examples:
    python -m automtl train configs/automtl/synthetic_tinyresnet.py --work-dir work_dirs/tiny
    python -m automtl train configs/automtl/nyuv2_deeplab_resnet34.py --cfg-options data.data_root=DIR
    torchrun --nproc_per_node=2 -m automtl train configs/automtl/synthetic_tinyresnet.py --resume
    python -m automtl train CONFIG --resume --allow-changed data.data_root   # the data moved
    python -m automtl train configs/supernet/vit_mvt_micro_synthetic.py   # then: automtl search
    python -m automtl train configs/nas/vit_mvt_tiny/task_det.py --work-dir work_dirs/det \
        --cfg-options data_root=data/tiny/coco/          # OpenMMLab config (needs the mm extra)
    torchrun --nproc_per_node=2 -m automtl train configs/nas/vit_mvt_tiny/task_seg.py --launcher pytorch

One run per work dir: a second run in a work dir that a live run holds is refused (exit 2,
naming the holder's host:pid); the lock of a killed run is taken over. Checkpoints carry the
run's settings and history.json is rewritten with each of them.
"""
from __future__ import annotations

import argparse
import json
import os

from automtl.cli._common import add_config_options, default_work_dir, report_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m automtl train``."""
    parser.add_argument("config", help="mmengine-style .py config (see configs/automtl/, configs/supernet/)")
    add_config_options(parser)
    parser.add_argument("--resume", action="store_true",
                        help="skip finished phases and continue an interrupted one from its checkpoint; "
                             "refused (naming the keys) when the run-defining settings differ from the "
                             "checkpoint's: tasks, seed, data, model, trainer, the settings of this and "
                             "earlier phases (AutoMTL), or space, supernet, data, seed, supernet_train "
                             "(supernet). Always free to change: trainer.print_iters, val_iters, "
                             "checkpoint_iters, progress, tensorboard, baseline, "
                             "supernet_train.checkpoint_every, data.check, and the sections of the phases "
                             "after the one being resumed")
    parser.add_argument("--allow-changed", nargs="+", default=(), metavar="KEY",
                        help="with --resume: dotted config keys (or prefixes such as data, or globs such "
                             "as 'data.*') whose values may differ from the checkpoint's, e.g. "
                             "--allow-changed data.data_root")
    parser.add_argument("--amp", action="store_true",
                        help="OpenMMLab configs: mixed precision (mmengine AmpOptimWrapper; needs CUDA)")
    parser.add_argument("--launcher", choices=("none", "pytorch", "slurm", "mpi"), default="none",
                        help="OpenMMLab configs: how processes were launched (pytorch: torchrun). automtl "
                             "configs read torchrun's environment themselves")


def run(args: argparse.Namespace) -> int:
    """Load the config, pick its runner by kind, train, print the results as JSON."""
    return report_errors(lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    from automtl.config import config_kind, load_config

    work_dir = default_work_dir(args.config, args.work_dir)
    cfg = load_config(args.config, args.cfg_options)
    kind = config_kind(cfg)
    if kind == "search":
        from automtl.errors import ConfigError

        raise ConfigError("this is a search config: run `python -m automtl search` on it",
                          path=args.config)
    if kind == "mm":
        from automtl.mm.runner import train_mm

        out = train_mm(args.config, work_dir=work_dir, resume=args.resume, amp=args.amp,
                       launcher=args.launcher, cfg_options=args.cfg_options, seed=args.seed)
        if os.environ.get("RANK", "0") == "0":
            print(json.dumps(out, indent=2, default=str))
        return 0
    if args.amp:
        from automtl.errors import ConfigError

        raise ConfigError("--amp applies to OpenMMLab configs only", key="--amp", path=args.config)
    common = dict(work_dir=work_dir, seed=args.seed, resume=args.resume, device=args.device,
                  cfg_options=args.cfg_options, allow_changed=tuple(args.allow_changed))
    if kind == "supernet":
        from automtl.cli.run_supernet import run_supernet_config

        out = run_supernet_config(args.config, **common)
    elif kind == "delta":
        from automtl.cli.run_delta import run_delta_config

        out = run_delta_config(args.config, **common)
        out = {k: out.get(k) for k in ("results", "params", "delta_density", "flops")} | {"work_dir": work_dir}
    else:
        from automtl.cli.run_automtl import run_config

        out = run_config(args.config, **common)
        out = {"results": out.get("results"), "params": out.get("params"), "work_dir": work_dir}
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps(out, indent=2, default=str))
    return 0
