"""Small hand-made backbones for the supernet tests (built with the Graph/Node API)."""
from __future__ import annotations

import torch
from torch import nn

from automtl.graph import Graph, Node


class GraphBuilder:
    """Appends conv / bn / relu / add nodes to a graph with short calls."""

    def __init__(self, shape: tuple[int, ...], name: str = "tiny") -> None:
        self.g = Graph(name=name)
        self.g.add(Node("data", "input", (), {"shape": shape}))
        self.last = "data"

    def conv(self, name: str, src: str, cin: int, cout: int, k: int = 3, s: int = 1, p: int | None = None,
             groups: int = 1) -> str:
        p = k // 2 if p is None else p
        self.g.add(Node(name, "conv", (src,), {"in_channels": cin, "out_channels": cout, "kernel_size": (k, k),
                                              "stride": (s, s), "padding": (p, p), "dilation": (1, 1),
                                              "groups": groups, "bias": False}))
        return name

    def bn(self, name: str, src: str, c: int) -> str:
        self.g.add(Node(name, "batch_norm", (src,), {"num_features": c, "eps": 1e-5, "momentum": 0.1,
                                                    "affine": True, "track_running_stats": True}))
        return name

    def op(self, name: str, op: str, *srcs: str, **attrs: object) -> str:
        self.g.add(Node(name, op, tuple(srcs), dict(attrs)))
        return name

    def cbr(self, name: str, src: str, cin: int, cout: int, k: int = 3, s: int = 1, relu: bool = True) -> str:
        out = self.bn(f"{name}.bn", self.conv(f"{name}.conv", src, cin, cout, k, s), cout)
        return self.op(f"{name}.relu", "relu", out) if relu else out

    def finish(self, *outputs: str) -> Graph:
        self.g.outputs = list(outputs)
        return self.g.infer_shapes()


def tiny_resnet(c: int = 8, size: int = 16) -> Graph:
    """Stem, one identity block, one stride-2 block with a 1×1 downsample (channels c → 2c)."""
    b = GraphBuilder((1, 3, size, size))
    x = b.cbr("stem", "data", 3, c)
    y = b.cbr("b1.c1", x, c, c)
    y = b.cbr("b1.c2", y, c, c, relu=False)
    x = b.op("b1.relu", "relu", b.op("b1.add", "add", y, x))
    y = b.cbr("b2.c1", x, c, 2 * c, s=2)
    y = b.cbr("b2.c2", y, 2 * c, 2 * c, relu=False)
    d = b.cbr("b2.down", x, c, 2 * c, k=1, s=2, relu=False)
    x = b.op("b2.relu", "relu", b.op("b2.add", "add", y, d))
    return b.finish(x)


def one_conv(c: int = 4, size: int = 8) -> Graph:
    """input → conv → bn (one policy layer whose skip is the identity)."""
    b = GraphBuilder((1, c, size, size), name="one_conv")
    return b.finish(b.cbr("l", "data", c, c, relu=False))


class DenseHead(nn.Module):
    """1×1 conv head (a stand-in for a segmentation / depth head)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def heads(cin: int, tasks: tuple[str, ...] = ("seg", "depth", "normal")) -> dict[str, nn.Module]:
    return {t: DenseHead(cin, i + 1) for i, t in enumerate(tasks)}


def perturb(model: nn.Module, seed: int = 0) -> None:
    """Random weights and BN statistics everywhere, so different branches give different values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "logits":
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
