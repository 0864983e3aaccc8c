"""Dense prediction heads: DeepLab ASPP (v2 sum / v3 concat) and a light conv head."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from automtl.checks import check_int, check_ints, check_number
from automtl.errors import ConfigError
from automtl.registry import HEADS, build

Size = int | Sequence[int] | None


def _size(out_size: Size) -> tuple[int, int] | None:
    if out_size is None:
        return None
    if isinstance(out_size, int):
        return (out_size, out_size)
    h, w = (int(s) for s in out_size)
    return (h, w)


class DenseHead(nn.Module):
    """Base: ``forward(x, out_size=None)``; the output is resized bilinearly to ``out_size``.

    ``out_size`` given at construction is the default; None keeps the feature resolution
    (losses and metrics of automtl resize predictions to the target size themselves).
    """

    def __init__(self, in_channels: int, num_classes: int, *, out_size: Size = None) -> None:
        super().__init__()
        check_int(in_channels, "in_channels", lo=1)
        check_int(num_classes, "num_classes", lo=1)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.out_size = _size(out_size)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define forward_head")

    def forward(self, x: torch.Tensor, out_size: Size = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(f"{type(self).__name__} expects [B,{self.in_channels},H,W] input, "
                              f"got {tuple(x.shape)}", key="in_channels")
        y = self.forward_head(x)
        size = _size(out_size) or self.out_size
        if size is not None and tuple(y.shape[-2:]) != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y


@HEADS.register_module()
class ASPPHead(DenseHead):
    """DeepLab-v2 ASPP, as AutoMTL uses it: parallel dilated branches whose outputs are summed.

    Each branch: 3×3 conv (dilation r) → ReLU → dropout → 1×1 → ReLU → dropout → 1×1 to
    ``num_classes``. AutoMTL uses ``mid_channels=1024`` with ResNet-34; 256 is the default
    here to keep CPU runs light.

    Example:
        >>> head = ASPPHead(512, 19)
        >>> head(torch.zeros(2, 512, 8, 8), out_size=(32, 32)).shape
        torch.Size([2, 19, 32, 32])
    """

    def __init__(self, in_channels: int, num_classes: int, *, dilations: Sequence[int] = (6, 12, 18, 24),
                 mid_channels: int = 256, dropout: float = 0.5, out_size: Size = None) -> None:
        super().__init__(in_channels, num_classes, out_size=out_size)
        check_ints(dilations, "dilations", lo=1)
        check_int(mid_channels, "mid_channels", lo=1)
        check_number(dropout, "dropout", lo=0)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, mid_channels, 3, padding=int(r), dilation=int(r)),
                nn.ReLU(inplace=True), nn.Dropout2d(dropout),
                nn.Conv2d(mid_channels, mid_channels, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
                nn.Conv2d(mid_channels, num_classes, 1))
            for r in dilations)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


@HEADS.register_module()
class ASPPv3Head(DenseHead):
    """DeepLab-v3 ASPP: 1×1 + dilated 3×3 branches + image pooling, concatenated, projected."""

    def __init__(self, in_channels: int, num_classes: int, *, dilations: Sequence[int] = (6, 12, 18),
                 mid_channels: int = 256, dropout: float = 0.1, out_size: Size = None) -> None:
        super().__init__(in_channels, num_classes, out_size=out_size)
        check_ints(dilations, "dilations", lo=1)
        check_int(mid_channels, "mid_channels", lo=1)
        check_number(dropout, "dropout", lo=0)

        def cbr(k: int, d: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(in_channels, mid_channels, k, padding=d if k == 3 else 0,
                                           dilation=d, bias=False),
                                 nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True))

        self.branches = nn.ModuleList([cbr(1, 1)] + [cbr(3, int(r)) for r in dilations])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                  nn.ReLU(inplace=True))
        n = len(self.branches) + 1
        self.project = nn.Sequential(nn.Conv2d(n * mid_channels, mid_channels, 1, bias=False),
                                     nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
                                     nn.Conv2d(mid_channels, num_classes, 1))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        feats.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(feats, dim=1))


@HEADS.register_module()
class ConvHead(DenseHead):
    """Light head: ``num_convs`` × (3×3 conv → BN → ReLU) then a 1×1 conv to ``num_classes``."""

    def __init__(self, in_channels: int, num_classes: int, *, mid_channels: int = 64, num_convs: int = 1,
                 out_size: Size = None) -> None:
        super().__init__(in_channels, num_classes, out_size=out_size)
        check_int(mid_channels, "mid_channels", lo=1)
        check_int(num_convs, "num_convs", lo=0)
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(int(num_convs)):
            layers += [nn.Conv2d(c, mid_channels, 3, padding=1, bias=False), nn.BatchNorm2d(mid_channels),
                       nn.ReLU(inplace=True)]
            c = mid_channels
        layers.append(nn.Conv2d(c, num_classes, 1))
        self.layers = nn.Sequential(*layers)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_head(cfg: dict | nn.Module, *, key: str = "head") -> nn.Module:
    """A head from ``dict(type="ASPPHead", in_channels=..., num_classes=..., ...)`` (any type
    registered in :data:`automtl.registry.HEADS`), or an ``nn.Module`` as it is."""
    if isinstance(cfg, nn.Module):
        return cfg
    return build(HEADS, cfg, key=key)


def build_task_heads(tasks: Sequence[str], in_channels: int, *, head: str = "ConvHead",
                     num_classes: int | None = None, **kwargs) -> dict[str, nn.Module]:
    """``{task: head}`` with each task's output channels (``task_out_channels``)."""
    from automtl.data.tasks import task_out_channels

    return {t: build_head(dict(type=head, in_channels=in_channels,
                               num_classes=task_out_channels(t, num_classes=num_classes), **kwargs))
            for t in tasks}
