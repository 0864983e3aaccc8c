"""Whole multi-task models beyond AutoMTL's own supernet, registered in ``MODELS``: ``MLoReModel``
(a multi-level trunk — AutoMTL's CNN supernet or ViT-MVT — with the MLoRE decoder).

Example:
    >>> from automtl.models import build_mlore_model
    >>> model = build_mlore_model(["segment_semantic", "depth_zbuffer"], backbone=dict(type="TinyResNet"),
    ...                           decoder=dict(channels=16, ranks=(4, 8), top_k=1))
"""
from __future__ import annotations

from automtl.models.levels import stage_ends, tap_levels
from automtl.models.mlore import MLoReModel, ReparameterizedMLoRe, build_mlore_model
from automtl.models.trunks import AutoMTLTrunk, FeatureTrunk, LevelTaps, ViTMVTTrunk

__all__ = ["AutoMTLTrunk", "FeatureTrunk", "LevelTaps", "MLoReModel", "ReparameterizedMLoRe", "ViTMVTTrunk",
           "build_mlore_model", "stage_ends", "tap_levels"]
