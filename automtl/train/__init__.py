"""Training: the three-phase :class:`Trainer`, checkpoints, losses, config runner and policy sampling."""
from __future__ import annotations

from automtl.train.checkpoint import atomic_save, safe_load, seed_everything
from automtl.train.losses import criterion_for_task, default_criteria
from automtl.train.trainer import PHASES, Trainer

__all__ = ["PHASES", "Trainer", "atomic_save", "criterion_for_task", "default_criteria", "safe_load",
           "seed_everything"]
