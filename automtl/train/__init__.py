"""Training: the three-phase :class:`Trainer`, checkpoints, losses, config runner and policy sampling."""
from __future__ import annotations

from automtl.train.checkpoint import atomic_save, safe_load, seed_everything
from automtl.train.losses import criterion_for_task, default_criteria
from automtl.train.runner import load_config, run_config
from automtl.train.sampling import choose_policy, sample_candidates
from automtl.train.trainer import PHASES, Trainer
from automtl.train.zoo import TinyResNet

__all__ = ["PHASES", "Trainer", "TinyResNet", "atomic_save", "choose_policy", "criterion_for_task",
           "default_criteria", "load_config", "run_config", "safe_load", "sample_candidates", "seed_everything"]
