"""Shared pieces of the trainer tests: a tiny real MTLModel over a graph backbone and loaders.

(A plain module, not ``conftest.py``: other test folders have their own ``conftest`` and a
``from conftest import`` could pick theirs.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from automtl.graph import Graph, Node
from automtl.supernet import MTLModel

TASKS = ("a", "b")


def tiny_backbone(size: int = 16, bn: bool = True) -> Graph:
    """conv-bn-relu x3 (the last with stride 2) to 8x8; ``bn=False``: a normalisation-free variant.

    Without BN the widths stay at 3 and the stride is 1 (then a 2x2 average pool), so skips
    need no projection (whose norm would see batch statistics): used to compare runs that
    split a batch over processes.
    """
    widths = (8, 8, 16) if bn else (3, 3, 3)
    nodes = [Node("data", "input", attrs={"shape": (1, 3, size, size)})]
    prev, cin = "data", 3
    for i, c in enumerate(widths):
        s = 2 if bn and i == len(widths) - 1 else 1
        nodes.append(Node(f"conv{i}", "conv", (prev,), dict(
            in_channels=cin, out_channels=c, kernel_size=(3, 3), stride=(s, s), padding=(1, 1),
            dilation=(1, 1), groups=1, bias=not bn)))
        prev = f"conv{i}"
        if bn:
            nodes.append(Node(f"bn{i}", "batch_norm", (prev,), dict(
                num_features=c, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)))
            prev = f"bn{i}"
        nodes.append(Node(f"relu{i}", "relu", (prev,)))
        prev, cin = f"relu{i}", c
    if not bn:
        nodes.append(Node("pool", "avg_pool", (prev,), dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                                                           ceil_mode=False, count_include_pad=True)))
        prev = "pool"
    return Graph(nodes, outputs=[prev]).infer_shapes()


def tiny_model(tasks=TASKS, bn: bool = True, seed: int = 0) -> MTLModel:
    torch.manual_seed(seed)
    return MTLModel(tiny_backbone(bn=bn), {t: nn.Conv2d(16 if bn else 3, 1, 1) for t in tasks})


class Regression(Dataset):
    """Images and a per-task 8x8 target; every fetched index is appended to ``log``."""

    def __init__(self, n: int, task_index: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        pooled = F.avg_pool2d(self.x, 2)
        self.y = pooled[:, :1] * (task_index + 1) if task_index % 2 == 0 else pooled[:, 1:2].abs()
        self.log: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.log.append(i)
        return self.x[i], self.y[i]


def make_loaders(tasks=TASKS, n: int = 24, batch: int = 4):
    train = {t: DataLoader(Regression(n, i), batch_size=batch, shuffle=True) for i, t in enumerate(tasks)}
    val = {t: DataLoader(Regression(8, i, seed=1), batch_size=4) for i, t in enumerate(tasks)}
    return train, val


class MSEMetric:
    """Mean squared error (reset/update/compute)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total, self.n = 0.0, 0

    def update(self, out, target) -> None:
        self.total += float(((out - target) ** 2).sum())
        self.n += target.numel()

    def compute(self):
        return {"mse": self.total / max(self.n, 1)}


def mse_criteria(tasks=TASKS):
    return {t: F.mse_loss for t in tasks}


def mse_metrics(tasks=TASKS):
    return {t: MSEMetric() for t in tasks}
