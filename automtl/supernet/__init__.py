"""The multi-task supernet: per-layer share / specialize / skip (or ``delta`` on a base task)
policies and the branched model; ``DeltaModel``: separate task networks with fixed deltas."""
from automtl.supernet.branched import BranchedModel
from automtl.supernet.delta_model import DeltaModel
from automtl.supernet.model import MTLModel
from automtl.supernet.policy import ALL_CHOICES, CHOICES, DELTA, Policy

__all__ = ["MTLModel", "Policy", "BranchedModel", "CHOICES", "ALL_CHOICES", "DELTA", "DeltaModel"]
