"""A training run launched as a subprocess by the resume and distributed tests.

usage: _job.py WORK_DIR OUT [--kill-at N] [--resume] [--no-bn]
Runs pre_train(6) then alter_train_with_reg(12, (2, 3)) (checkpoint every 3 iterations);
``--kill-at N`` SIGKILLs the process at the N-th criterion call of the alter phase. The
final state dict goes to OUT (rank 0 only).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TASKS, make_loaders, mse_metrics, tiny_model

from automtl.train import Trainer

ap = argparse.ArgumentParser()
ap.add_argument("work_dir")
ap.add_argument("out")
ap.add_argument("--kill-at", type=int, default=0)
ap.add_argument("--resume", action="store_true")
ap.add_argument("--no-bn", action="store_true")
ap.add_argument("--batch", type=int, default=4)
args = ap.parse_args()
torch.set_num_threads(1)
calls = {"alter": 0}
phase = {"name": ""}


def criterion(out, y):
    if phase["name"] == "alter":
        calls["alter"] += 1
        if calls["alter"] == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return F.mse_loss(out, y)


train, val = make_loaders(batch=args.batch)
trainer = Trainer(tiny_model(bn=not args.no_bn), train, val, {t: criterion for t in TASKS}, mse_metrics(),
                  work_dir=args.work_dir, seed=3, checkpoint_iters=3, progress=False)
trainer.pre_train(6, 1e-2, resume=args.resume)
phase["name"] = "alter"
trainer.alter_train_with_reg(12, (2, 3), network_lr=1e-2, policy_lr=0.05, resume=args.resume)
if trainer.dist.is_main:
    torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, args.out)
trainer.close()
