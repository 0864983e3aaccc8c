"""The multi-task supernet: per-layer share / specialize / skip policies and the branched model."""
from automtl.supernet.branched import BranchedModel
from automtl.supernet.model import MTLModel
from automtl.supernet.policy import CHOICES, Policy

__all__ = ["MTLModel", "Policy", "BranchedModel", "CHOICES"]
