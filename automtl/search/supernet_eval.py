"""Scoring a candidate with weights inherited from a trained supernet.

The supernet activates the candidate (``set_arch`` for ViT-MVT, a fixed ``Policy`` for an
AutoMTL ``MTLModel``), optionally recalibrates BatchNorm statistics on N training batches,
and is scored by each task's primary metric on a *fixed* validation subset (the same batches,
cached once, for every candidate), so fitness differences come from the architecture only.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from automtl.errors import ConfigError
from automtl.search.evaluate import Evaluator
from automtl.search.space import Candidate, SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]
Activate = Callable[[nn.Module, Candidate], None]
Forward = Callable[[nn.Module, torch.Tensor, str], torch.Tensor]


def take_batches(loader: Iterable[Any], n: int | None) -> list[Batch]:
    """The first ``n`` ``(input, target)`` batches of ``loader`` (all when ``n`` is None)."""
    out: list[Batch] = []
    for batch in itertools.islice(loader, n):
        if isinstance(batch, Mapping):
            batch = (batch["image"], batch["target"])
        x, y = batch[0], batch[1]
        out.append((x, y))
    return out


def default_activate(space: SearchSpace) -> Activate:
    """How to put ``net`` in a candidate's configuration: ``space.to_policy`` + ``set_policy``
    for policy spaces, ``set_arch`` for elastic supernets."""
    if hasattr(space, "to_policy"):
        return lambda net, cand: net.set_policy(space.to_policy(cand))  # type: ignore[attr-defined]
    return lambda net, cand: net.set_arch(cand)


def default_forward(space: SearchSpace) -> Forward:
    """How to run one task of the active candidate."""
    if hasattr(space, "to_policy"):
        return lambda net, x, task: net(x, task=task, stage="fixed")
    return lambda net, x, task: net(x, task)


def recalibrate_bn(net: nn.Module, batches: Sequence[Batch], forward: Callable[[torch.Tensor], Any],
                   device: torch.device) -> int:
    """Reset the running statistics of every BatchNorm of ``net`` and re-estimate them as the
    plain average over ``batches``; returns how many BatchNorm layers were recalibrated."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if not bns or not batches:
        return 0
    saved = [(m, m.momentum) for m in bns]
    was_training = net.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch weighs the same
        net.train()
        with torch.no_grad():
            for x, _ in batches:
                forward(x.to(device))
    finally:
        for m, mom in saved:
            m.momentum = mom
        net.train(was_training)
    return len(bns)


class SupernetEvaluator(Evaluator):
    """Per-task primary metric of a candidate with inherited supernet weights.

    Example::

        ev = SupernetEvaluator(net, space, val_loaders, n_val_batches=2)
        ev.evaluate(space.sample(random.Random(0)))   # {"segment_semantic": 0.41, ...}

    Args:
        net: the trained supernet (weights are never changed, only BN statistics when
            ``bn_batches`` > 0 — saved and restored around each evaluation).
        space: the candidate space (chooses the default ``activate``/``forward``).
        val_loaders: ``{task: loader}`` of ``(input, target)`` batches.
        metrics: ``{task: Metric}`` (default ``automtl.metrics.default_metrics(tasks)``); the
            score of a task is its metric's ``primary`` value.
        n_val_batches: the fixed validation subset, in batches per task (None: all).
        train_loaders, bn_batches: recalibrate BatchNorm on this many training batches per
            task before scoring (0: no recalibration; nets without BN are left alone).
        device: where to evaluate (default: CUDA when available).
    """

    def __init__(self, net: nn.Module, space: SearchSpace, val_loaders: Mapping[str, Iterable[Any]],
                 *, metrics: Mapping[str, Any] | None = None, n_val_batches: int | None = 4,
                 train_loaders: Mapping[str, Iterable[Any]] | None = None, bn_batches: int = 0,
                 device: str | torch.device | None = None, activate: Activate | None = None,
                 forward: Forward | None = None) -> None:
        self.tasks = tuple(space.tasks)
        missing = [t for t in self.tasks if t not in val_loaders]
        if missing:
            raise ConfigError(f"no validation loader for tasks {missing}", key="val_loaders")
        if metrics is None:
            from automtl.metrics import default_metrics

            metrics = default_metrics(self.tasks)
        self.metrics = dict(metrics)
        self.higher_is_better = {t: bool(self.metrics[t].higher_is_better[self.metrics[t].primary])
                                 for t in self.tasks}
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.space = space
        self.activate = activate or default_activate(space)
        self.forward = forward or default_forward(space)
        self.val = {t: take_batches(val_loaders[t], n_val_batches) for t in self.tasks}
        self.bn_batches = int(bn_batches)
        self.bn = {}
        if self.bn_batches > 0:
            if train_loaders is None:
                raise ConfigError("bn_batches > 0 needs train_loaders", key="bn_batches")
            self.bn = {t: take_batches(train_loaders[t], self.bn_batches) for t in self.tasks}
        self._bn_state = {k: v.clone() for k, v in self.net.state_dict().items()
                          if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        """Activate, (recalibrate,) and score every task on the fixed subset."""
        self.activate(self.net, candidate)
        scores = {}
        try:
            for task in self.tasks:
                if self.bn:
                    recalibrate_bn(self.net, self.bn[task],
                                   lambda x, t=task: self.forward(self.net, x, t), self.device)
                metric = self.metrics[task]
                metric.reset()
                self.net.eval()
                with torch.no_grad():
                    for x, y in self.val[task]:
                        metric.update(self.forward(self.net, x.to(self.device), task).float().cpu(), y)
                scores[task] = float(metric.compute()[metric.primary])
        finally:
            if self.bn:  # the supernet's own statistics come back for the next candidate
                self.net.load_state_dict(self._bn_state, strict=False)
        return scores
