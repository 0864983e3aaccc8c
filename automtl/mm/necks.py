"""A simple feature pyramid built from one stride-16 map, for detection with a plain ViT.

ViT-MVT (like ViTDet) feeds Mask R-CNN from the single-scale output of a plain transformer:
the last map is upsampled with transposed convolutions (strides 4 and 8), kept (16) and
max-pooled (32), then each level is projected to ``out_channels`` by a 1×1 and a 3×3
convolution, each followed by a channels-first LayerNorm. ``extra_pool`` adds one more level
(a stride-2 max pool of the coarsest output, stride 64), as FPN's ``P6`` for the RPN.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from automtl.errors import ConfigError, ModelError
from automtl.mm.scopes import register_mm

#: the scale factors the pyramid can build from the stride-16 input
SUPPORTED_SCALES: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (each pixel normalised on its own)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def _resample(scale: float, channels: int) -> tuple[nn.Module, int]:
    """The resampling stage of one level and its output channel count."""
    if scale == 4.0:
        half, quarter = channels // 2, channels // 4
        return nn.Sequential(nn.ConvTranspose2d(channels, half, 2, 2), LayerNorm2d(half), nn.GELU(),
                             nn.ConvTranspose2d(half, quarter, 2, 2)), quarter
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, 2, 2), channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    return nn.MaxPool2d(2, 2), channels


@register_mm()
class SimplePyramid(BaseModule):
    """Multi-scale maps (strides 4, 8, 16, 32 and, with ``extra_pool``, 64) from the last
    (stride-16) map of a backbone's output tuple.

    Args:
        in_channels: channels of the backbone's last map (the embedding width).
        out_channels: channels of every output level (256 for mmdet's RPN / RoI heads).
        scales: resampling factors relative to stride 16, a subset of (4.0, 2.0, 1.0, 0.5)
            in decreasing order (finest level first).
        extra_pool: also return a stride-2 max pool of the coarsest level.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scales: Sequence[float] = (4.0, 2.0, 1.0, 0.5), extra_pool: bool = True,
                 init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        scales = tuple(float(s) for s in scales)
        if not scales or any(s not in SUPPORTED_SCALES for s in scales) or list(scales) != sorted(
                set(scales), reverse=True):
            raise ConfigError(f"scales must be a non-empty, strictly decreasing subset of {SUPPORTED_SCALES}",
                              key="neck.scales", value=scales)
        if in_channels < 4 or (4.0 in scales and in_channels % 4) or (2.0 in scales and in_channels % 2):
            raise ConfigError("in_channels must be divisible by the largest upsampling factor "
                              f"({int(max(scales)) if max(scales) > 1 else 1}) and at least 4",
                              key="neck.in_channels", value=in_channels)
        if out_channels < 1:
            raise ConfigError("must be a positive integer", key="neck.out_channels", value=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scales, self.extra_pool = scales, extra_pool
        self.resample = nn.ModuleList()
        self.project = nn.ModuleList()
        for s in scales:
            stage, c = _resample(s, in_channels)
            self.resample.append(stage)
            self.project.append(nn.Sequential(
                nn.Conv2d(c, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels)))

    @property
    def num_outs(self) -> int:
        """Number of output levels (what mmdet's anchor generator must have strides for)."""
        return len(self.scales) + int(self.extra_pool)

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Levels from finest to coarsest, each (B, out_channels, H·s/16, W·s/16)."""
        if isinstance(inputs, Tensor):
            x = inputs
        else:
            if len(inputs) == 0:
                raise ModelError("SimplePyramid got an empty tuple of backbone maps")
            x = inputs[-1]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ModelError(f"SimplePyramid(in_channels={self.in_channels}) expects a (B, {self.in_channels}, "
                             f"H, W) map from the backbone, got {tuple(x.shape)}")
        outs = [proj(stage(x)) for stage, proj in zip(self.resample, self.project)]
        if self.extra_pool:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
