"""Training: the three-phase :class:`Trainer`, one-shot supernet training, checkpoints, losses
and policy sampling."""
from __future__ import annotations

from automtl.train.checkpoint import atomic_save, safe_load, seed_everything
from automtl.train.losses import criterion_for_task, default_criteria
from automtl.train.policy_sampling import choose_policy, sample_candidates
from automtl.train.supernet import train_supernet
from automtl.train.trainer import PHASES, Trainer

__all__ = ["PHASES", "Trainer", "atomic_save", "choose_policy", "criterion_for_task",
           "default_criteria", "safe_load", "sample_candidates", "seed_everything", "train_supernet"]
