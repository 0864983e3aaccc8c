"""Training an elastic supernet for search: uniform or sandwich sampling of subnets per step.

Each step samples subnets of the space (``uniform``: one random candidate; ``sandwich``: the
largest, the smallest and ``n_random`` random ones, gradients summed), and every task takes
one batch through every sampled subnet. Weights are entangled, so every subnet inherits them.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn

from automtl.errors import ConfigError, TrainingError
from automtl.search.space import Candidate, SearchSpace
from automtl.search.supernet_eval import Activate, Forward, default_activate, default_forward

LOG = logging.getLogger("automtl.search")
SAMPLINGS = ("uniform", "sandwich")


def _cycle(loader: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ConfigError("a training loader yields no batch", key="train_loaders")


def _subnets(space: SearchSpace, sampling: str, rng: random.Random, n_random: int) -> list[Candidate]:
    if sampling == "uniform":
        return [space.sample(rng)]
    out = []
    for name in ("largest", "smallest"):
        if hasattr(space, name):
            out.append(getattr(space, name)())
    return out + [space.sample(rng) for _ in range(n_random)]


def train_supernet(net: nn.Module, space: SearchSpace, train_loaders: Mapping[str, Iterable[Any]], *,
                   steps: int, lr: float = 1e-3, weight_decay: float = 0.05, sampling: str = "sandwich",
                   n_random: int = 2, criteria: Mapping[str, nn.Module] | None = None,
                   seed: int = 0, device: str | torch.device | None = None,
                   activate: Activate | None = None, forward: Forward | None = None) -> list[float]:
    """Train ``net`` for ``steps`` optimiser steps (AdamW); returns the mean loss per step.

    Raises :class:`TrainingError` naming the step and task on a non-finite loss.
    """
    if sampling not in SAMPLINGS:
        raise ConfigError(f"unknown sampling {sampling!r}; use one of {SAMPLINGS}", key="sampling")
    tasks = tuple(space.tasks)
    if criteria is None:
        from automtl.train.losses import default_criteria

        criteria = default_criteria(tasks)
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    net.to(dev).train()
    activate = activate or default_activate(space)
    forward = forward or default_forward(space)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    streams = {t: _cycle(train_loaders[t]) for t in tasks}
    history = []
    for step in range(steps):
        batches = {t: next(streams[t]) for t in tasks}
        opt.zero_grad(set_to_none=True)
        total, n = 0.0, 0
        for cand in _subnets(space, sampling, rng, n_random):
            activate(net, cand)
            for t in tasks:
                x, y = batches[t][0].to(dev), batches[t][1].to(dev)
                loss = criteria[t](forward(net, x, t), y)
                if not torch.isfinite(loss):
                    raise TrainingError(f"supernet training: non-finite loss at step {step}, "
                                        f"task '{t}'")
                loss.backward()
                total += float(loss.detach())
                n += 1
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        history.append(total / max(n, 1))
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            LOG.info("supernet step %d/%d loss %.4f", step + 1, steps, history[-1])
    net.eval()
    return history

