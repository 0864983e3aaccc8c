"""Per-task criteria: hand values, invalid pixels skipped, empty batches still backward."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from automtl.errors import ConfigError
from automtl.train.losses import (
    BCEMapLoss,
    DepthL1Loss,
    MaskedL1Loss,
    NormalCosineLoss,
    SegmentationLoss,
    default_criteria,
)


def test_segmentation_ignores_minus_one_and_upsamples():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0] = -1
    valid = target >= 0
    manual = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    assert SegmentationLoss()(logits, target) == pytest.approx(manual.item(), rel=1e-5)
    low = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = SegmentationLoss()(low, torch.full((1, 4, 4), -1))
    loss.backward()
    assert loss.item() == 0.0 and low.grad is not None


def test_depth_normal_bce_l1_hand_values():
    depth = DepthL1Loss()(torch.tensor([1.0, 5.0, 2.0]).reshape(1, 1, 1, 3),
                          torch.tensor([2.0, 0.0, 4.0]).reshape(1, 1, 1, 3))
    assert depth.item() == pytest.approx(1.5)
    pred = torch.tensor([[0.0, 0, 2], [0, 0, -1], [1, 0, 0]]).T.reshape(1, 3, 1, 3)
    tgt = torch.tensor([[0.0, 0, 1], [0, 0, 1], [0, 0, 0]]).T.reshape(1, 3, 1, 3)
    assert NormalCosineLoss()(pred, tgt).item() == pytest.approx(1.0)  # (0 + 2) / 2 valid
    logits = torch.tensor([0.0, 0.0, 5.0]).reshape(1, 1, 1, 3)
    target = torch.tensor([1.0, 0.0, -1.0]).reshape(1, 1, 1, 3)
    assert BCEMapLoss()(logits, target).item() == pytest.approx(math.log(2))
    # balanced: 1 positive, 3 negatives -> positive weight 3
    logits = torch.zeros(1, 1, 1, 4)
    target = torch.tensor([1.0, 0, 0, 0]).reshape(1, 1, 1, 4)
    assert BCEMapLoss(pos_weight="balanced")(logits, target).item() == pytest.approx(6 * math.log(2) / 4)
    assert MaskedL1Loss()(torch.ones(1, 1, 1, 2), torch.tensor([0.5, -1.0]).reshape(1, 1, 1, 2)).item() == 0.5


def test_default_criteria():
    crit = default_criteria(["segment_semantic", "depth_zbuffer", "normal", "edge_texture", "saliency"])
    assert isinstance(crit["segment_semantic"], SegmentationLoss)
    assert crit["edge_texture"].pos_weight == "balanced" and crit["saliency"].pos_weight is None
    with pytest.raises(ConfigError, match="segmentation_bogus"):
        default_criteria(["segmentation_bogus"])
