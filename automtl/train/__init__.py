"""Training: the three-phase :class:`Trainer`, checkpoints, distributed helpers, config runner."""
from __future__ import annotations

from automtl.train.checkpoint import atomic_save, safe_load, seed_everything
from automtl.train.evaluation import load_baseline, save_baseline
from automtl.train.trainer import PHASES, Trainer

__all__ = ["PHASES", "Trainer", "atomic_save", "load_baseline", "safe_load", "save_baseline",
           "seed_everything"]
