"""Geometric transforms of one multi-task sample (``{"image": ..., task: ...}`` tensors), done
the same way on the image and every target so they stay aligned.

The train-time recipe of AutoMTL/AdaShare is :func:`random_scale` (factor in [0.5, 1.5]),
:func:`random_flip`, :func:`random_crop` (padding with each task's "invalid" value). Random
draws use torch's global RNG (seeded by the trainer; forked per loader worker by torch).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from automtl.data.tasks import IGNORE_INDEX
from automtl.errors import ConfigError

__all__ = ["pair", "resize", "resize_sample", "random_scale", "random_flip", "random_crop", "pad_value"]

Sample = dict[str, torch.Tensor]
_LABELS = ("segment_semantic", "human_parts")


def pair(value: int | Sequence[int] | None, *, key: str) -> tuple[int, int] | None:
    """``H`` or ``(H, W)`` as ``(H, W)`` (None stays None); :class:`ConfigError` at ``key`` otherwise."""
    if value is None:
        return None
    hw = (value, value) if isinstance(value, int) else tuple(value)
    if len(hw) != 2 or not all(isinstance(v, int) and v >= 1 for v in hw):
        raise ConfigError("must be a size H or (H, W) of positive integers", key=key, value=value)
    return (int(hw[0]), int(hw[1]))


def pad_value(key: str) -> float:
    """What a padded pixel holds: black image, ignored label, invalid depth/normal, ignored map."""
    if key in _LABELS:
        return float(IGNORE_INDEX)
    if key in ("image", "depth_zbuffer", "normal"):
        return 0.0
    return -1.0  # edge/saliency/keypoints maps: < 0 is ignored by their losses and metrics


def resize(key: str, t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``t`` at ``size``: bilinear (antialiased) for the image, nearest for every target."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    if key == "image":
        return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    if t.dim() == 2:
        return F.interpolate(t[None, None].float(), size=size, mode="nearest")[0, 0].to(t.dtype)
    return F.interpolate(t[None], size=size, mode="nearest")[0]


def resize_sample(sample: Mapping[str, torch.Tensor], size: tuple[int, int]) -> Sample:
    """Every tensor of ``sample`` at ``size``."""
    return {k: resize(k, v, size) for k, v in sample.items()}


def random_scale(sample: Mapping[str, torch.Tensor], low: float, high: float) -> Sample:
    """``sample`` rescaled by one factor drawn uniformly from ``[low, high)``."""
    h, w = sample["image"].shape[-2:]
    f = low + (high - low) * float(torch.rand(()))
    return resize_sample(sample, (max(1, round(h * f)), max(1, round(w * f))))


def random_flip(sample: Mapping[str, torch.Tensor]) -> Sample:
    """``sample`` mirrored left-right with probability 1/2 (the normal's x component negated)."""
    if float(torch.rand(())) >= 0.5:
        return dict(sample)
    out = {k: v.flip(-1) for k, v in sample.items()}
    if "normal" in out:
        out["normal"][0] = -out["normal"][0]
    return out


def random_crop(sample: Mapping[str, torch.Tensor], size: tuple[int, int]) -> Sample:
    """A random ``size`` window of ``sample``, padded (centred) with :func:`pad_value` first
    where the sample is smaller."""
    h, w = sample["image"].shape[-2:]
    ch, cw = size
    ph, pw = max(h, ch), max(w, cw)
    top, left = (ph - h) // 2, (pw - w) // 2
    y = int(torch.randint(0, ph - ch + 1, ()))
    x = int(torch.randint(0, pw - cw + 1, ()))
    out = {}
    for k, v in sample.items():
        if (ph, pw) != (h, w):
            canvas = v.new_full((*v.shape[:-2], ph, pw), pad_value(k))
            canvas[..., top:top + h, left:left + w] = v
            v = canvas
        out[k] = v[..., y:y + ch, x:x + cw].contiguous()
    return out
