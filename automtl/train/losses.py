"""Per-task training criteria matching the target formats of ``automtl.data``.

Each criterion is an ``nn.Module`` called as ``loss(pred, target) -> scalar``; ``pred`` is
the raw head output (resized to the target's size when they differ), invalid pixels are
skipped the same way the metrics skip them, and a batch without one valid pixel gives a
zero loss that still depends on ``pred`` (so backward works and DDP sees every parameter).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from automtl.data.tasks import IGNORE_INDEX, task_spec
from automtl.metrics.base import channel_norm, l2_normalize, match_size

__all__ = ["SegmentationLoss", "DepthL1Loss", "NormalCosineLoss", "BCEMapLoss", "MaskedL1Loss",
           "criterion_for_task", "default_criteria"]


def _zero(pred: torch.Tensor) -> torch.Tensor:
    return pred.sum() * 0.0


class SegmentationLoss(nn.Module):
    """Cross-entropy over classes; target ``ignore_index`` (-1) is skipped."""

    def __init__(self, *, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = match_size(pred, tuple(target.shape[-2:]))
        target = target.long()
        if not (target != self.ignore_index).any():
            return _zero(pred)
        return F.cross_entropy(pred, target, ignore_index=self.ignore_index)


class DepthL1Loss(nn.Module):
    """Mean absolute depth error over valid pixels (target > 0)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = match_size(pred, tuple(target.shape[-2:]))
        valid = (target > 0) & torch.isfinite(target)
        if not valid.any():
            return _zero(pred)
        return (pred[valid] - target[valid]).abs().mean()


class NormalCosineLoss(nn.Module):
    """``1 - cos`` between the normalised prediction and the unit target, valid pixels only."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = l2_normalize(match_size(pred, tuple(target.shape[-2:])))
        valid = channel_norm(target) > 0.5
        if not valid.any():
            return _zero(pred)
        cos = (pred * target).sum(dim=1)
        return ((1.0 - cos) * valid).sum() / valid.sum()


class BCEMapLoss(nn.Module):
    """Binary cross-entropy on logits for 0/1 maps; targets < 0 are ignored.

    ``pos_weight``: weight of positive pixels; ``"balanced"`` sets it per batch to
    #negatives/#positives (useful for thin edges), a float fixes it, None means 1.
    """

    def __init__(self, *, pos_weight: float | str | None = None) -> None:
        super().__init__()
        if isinstance(pos_weight, str) and pos_weight != "balanced":
            raise ValueError(f"pos_weight must be a number, None or 'balanced', got {pos_weight!r}")
        self.pos_weight = pos_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 3:
            target = target[:, None]
        pred = match_size(pred if pred.dim() == 4 else pred[:, None], tuple(target.shape[-2:]))
        valid = target >= 0
        if not valid.any():
            return _zero(pred)
        p, t = pred[valid], target[valid].float()
        if self.pos_weight == "balanced":
            pos = t.sum()
            pw = ((t.numel() - pos) / pos.clamp_min(1.0)).detach()
        elif self.pos_weight is None:
            pw = None
        else:
            pw = torch.tensor(float(self.pos_weight), device=p.device)
        return F.binary_cross_entropy_with_logits(p, t, pos_weight=pw)


class MaskedL1Loss(nn.Module):
    """Mean absolute error where the target is finite and >= 0 (e.g. keypoints2d)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = match_size(pred, tuple(target.shape[-2:]))
        valid = (target >= 0) & torch.isfinite(target)
        if not valid.any():
            return _zero(pred)
        return (pred[valid] - target[valid]).abs().mean()


def criterion_for_task(task: str) -> nn.Module:
    """The default criterion of ``task`` (edges use balanced BCE, saliency plain BCE)."""
    kind = task_spec(task).kind
    if kind == "segmentation":
        return SegmentationLoss()
    if kind == "depth":
        return DepthL1Loss()
    if kind == "normal":
        return NormalCosineLoss()
    if kind == "edge":
        return BCEMapLoss(pos_weight="balanced")
    if kind == "saliency":
        return BCEMapLoss()
    return MaskedL1Loss()


def default_criteria(tasks: Iterable[str]) -> dict[str, nn.Module]:
    """``{task: criterion}`` for ``tasks`` (ConfigError for an unknown task name)."""
    return {task: criterion_for_task(task) for task in tasks}
