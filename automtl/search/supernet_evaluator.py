"""Scoring a candidate with weights inherited from a trained supernet.

The space activates the candidate in its supernet (:class:`~automtl.spaces.SupernetSpace`),
optionally recalibrates BatchNorm statistics on N training batches, and the candidate is scored
by each task's primary metric on a *fixed* validation subset (the same batches, cached once,
for every candidate), so fitness differences come from the architecture only.

:func:`build_supernet_evaluator` assembles one from a config: data, supernet, weights. Weights
come from ``checkpoint`` (a state dict file) or, without one, from a short supernet training
on the data (``train=dict(steps=…, sampling="sandwich")``) cached as ``<work_dir>/supernet.pt``
together with what produced it, so resumed searches and extra workers score with the very same
weights instead of training their own.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automtl.errors import ConfigError
from automtl.io import atomic_save, safe_load
from automtl.search.evaluators import Evaluator
from automtl.spaces.base import Candidate, SearchSpace, SupernetSpace
from automtl.train.resume import load_model_state

LOG = logging.getLogger("automtl.search")
Batch = tuple[torch.Tensor, torch.Tensor]


def take_batches(loader: Iterable[Any], n: int | None) -> list[Batch]:
    """The first ``n`` ``(input, target)`` batches of ``loader`` (all when ``n`` is None)."""
    out: list[Batch] = []
    for batch in itertools.islice(loader, n):
        if isinstance(batch, Mapping):
            batch = (batch["image"], batch["target"])
        x, y = batch[0], batch[1]
        out.append((x, y))
    return out


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
        space: the candidate space: activates a candidate in ``net`` and runs a task.
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
                 device: str | torch.device | None = None) -> None:
        if not isinstance(space, SupernetSpace):
            raise ConfigError(f"space '{space.name}' has no supernet to inherit weights from",
                              key="evaluator.type")
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
        self.space.activate(self.net, candidate)
        scores = {}
        try:
            for task in self.tasks:
                if self.bn:
                    recalibrate_bn(self.net, self.bn[task],
                                   functools.partial(self.space.forward, self.net, task=task),
                                   self.device)
                metric = self.metrics[task]
                metric.reset()
                self.net.eval()
                with torch.no_grad():
                    for x, y in self.val[task]:
                        out = self.space.forward(self.net, x.to(self.device), task)
                        metric.update(out.float().cpu(), y)
                scores[task] = float(metric.compute()[metric.primary])
        finally:
            if self.bn:  # the supernet's own statistics come back for the next candidate
                self.net.load_state_dict(self._bn_state, strict=False)
        return scores


def build_supernet_evaluator(space: SearchSpace, *, work_dir: str | os.PathLike[str] | None = None,
                             data: Mapping[str, Any] | None = None, checkpoint: str | None = None,
                             train: Mapping[str, Any] | None = None,
                             supernet: Mapping[str, Any] | None = None, n_val_batches: int = 4,
                             bn_batches: int = 0, device: str | None = None,
                             seed: int = 0) -> SupernetEvaluator:
    """Synthetic loaders for the space's tasks, the supernet with trained weights, and the
    evaluator scoring candidates on a fixed validation subset."""
    from automtl.data import build_data
    from automtl.train.supernet import train_supernet

    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"space '{space.name}' has no supernet to inherit weights from",
                          key="evaluator.type")
    dcfg = dict(data or {"type": "synthetic"})
    train_loaders, val_loaders = build_data(dcfg, space.tasks, seed=seed, key="evaluator.data")
    torch.manual_seed(seed)
    net = space.build_supernet(**dict(supernet or {}))
    if checkpoint is not None:
        state = safe_load(Path(checkpoint))  # a supernet.pt or a training checkpoint
        load_model_state(net, state.get("state_dict") or state.get("model") or state, checkpoint)
        LOG.info("supernet weights from %s", checkpoint)
    elif train:
        tcfg = dict(train)
        meta = {"space": space.signature(), "data": dcfg, "train": tcfg, "seed": seed,
                "supernet": dict(supernet or {})}
        digest = hashlib.sha1(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()
        cache = Path(work_dir) / "supernet.pt" if work_dir is not None else None
        if cache is not None and cache.exists():
            state = safe_load(cache)
            if state.get("digest") == digest:
                load_model_state(net, state["state_dict"], cache)
                LOG.info("supernet weights from cache %s", cache)
                cache = None  # nothing to write
            else:
                LOG.info("supernet cache %s is from other settings: training again", cache)
        else:
            state = None
        if state is None or state.get("digest") != digest:
            train_supernet(net, space, train_loaders, seed=seed, device=device, **tcfg)
            if cache is not None:
                atomic_save({"digest": digest, "meta": json.dumps(meta, default=str),
                             "state_dict": net.state_dict()}, cache)
    else:
        LOG.warning("supernet evaluator without checkpoint or training: scores reflect random "
                    "weights")
    return SupernetEvaluator(net, space, val_loaders, n_val_batches=n_val_batches,
                             train_loaders=train_loaders, bn_batches=bn_batches, device=device)
