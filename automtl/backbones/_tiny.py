"""Small backbones for the demo, the configs and the tests (CPU-friendly, torch.fx-traceable)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from automtl.checks import check_int, check_ints


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, ReLU, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(nn.Module):
    """A ResNet-style backbone: 3x3 stem, then one basic block per width (stride 2 after the first).

    ``TinyResNet((16, 32, 64))`` has 9 policy layers (stem, 6 block convs, 2 projections), about
    77k parameters and output stride 4 — small enough for the 10-minute CPU demo.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64), blocks: int = 1) -> None:
        super().__init__()
        widths = list(check_ints(widths, "widths", lo=1))
        blocks = check_int(blocks, "blocks", lo=1)
        self.out_channels = widths[-1]
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for b in range(int(blocks)):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and b == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))
