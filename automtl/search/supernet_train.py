"""Training an elastic supernet for search: uniform or sandwich sampling of subnets per step.

Each step samples subnets of the space (``uniform``: one random candidate; ``sandwich``: the
largest, the smallest and ``n_random`` random ones, gradients summed), and every task takes
one batch through every sampled subnet. Weights are entangled, so every subnet inherits them.
With ``checkpoint=PATH`` the run writes an atomic checkpoint every ``checkpoint_every`` steps
(weights, optimiser, schedule, RNGs, data positions) and a rerun continues from it to the
same weights as an uninterrupted run.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from automtl.errors import CheckpointError, ConfigError, TrainingError
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


class _Cycle:
    """Batches of a plain iterable, forever (no resumable position: see :class:`TaskStream`)."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self._it = _cycle(loader)

    def next(self) -> Any:
        return next(self._it)

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: Any) -> None:
        if state is not None:
            raise CheckpointError("the checkpoint holds a data position but the loader is not a "
                                  "DataLoader")


def _stream(loader: Iterable[Any], seed: int, task: str) -> Any:
    """A resumable stream for a ``DataLoader``, a plain cycle for other iterables."""
    if isinstance(loader, DataLoader):
        from automtl.train.streams import TaskStream

        return TaskStream(loader, seed=seed, name=task)
    return _Cycle(loader)


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
                   activate: Activate | None = None, forward: Forward | None = None,
                   checkpoint: str | os.PathLike[str] | None = None,
                   checkpoint_every: int = 100) -> list[float]:
    """Train ``net`` for ``steps`` optimiser steps (AdamW); returns the mean loss per step.

    ``checkpoint``: a file to write every ``checkpoint_every`` steps and at the end; when it
    exists at the start, training continues from it (a finished run returns at once).
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
    streams = {t: _stream(train_loaders[t], seed, t) for t in tasks}
    history: list[float] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        start, history = _restore(Path(checkpoint), net, opt, sched, rng, streams, steps)
        LOG.info("supernet training resumes at step %d/%d from %s", start, steps, checkpoint)
    for step in range(start, steps):
        batches = {t: streams[t].next() for t in tasks}
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
        done = step + 1
        if checkpoint is not None and (done == steps or (checkpoint_every and done % checkpoint_every == 0)):
            _save(Path(checkpoint), net, opt, sched, rng, streams, done, steps, history)
    net.eval()
    return history


def _save(path: Path, net: nn.Module, opt: torch.optim.Optimizer, sched: Any, rng: random.Random,
          streams: Mapping[str, Any], step: int, steps: int, history: list[float]) -> None:
    from automtl.train.checkpoint import tuples_to_lists, atomic_save, rng_state

    atomic_save({"step": step, "steps": steps, "history": list(history), "state_dict": net.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "sampler_rng": tuples_to_lists(rng.getstate()), "rng": rng_state(),
                 "streams": {t: s.state_dict() for t, s in streams.items()}}, path)


def _restore(path: Path, net: nn.Module, opt: torch.optim.Optimizer, sched: Any, rng: random.Random,
             streams: Mapping[str, Any], steps: int) -> tuple[int, list[float]]:
    from automtl.train.checkpoint import lists_to_tuples, safe_load, set_rng_state

    state = safe_load(path)
    if int(state.get("steps", -1)) != steps:
        raise CheckpointError(f"{path}: checkpoint of a {state.get('steps')}-step run, this run has "
                              f"{steps} steps; remove it or keep the step count")
    missing = sorted(set(streams) - set(state["streams"]))
    if missing:
        raise CheckpointError(f"{path}: checkpoint has no data position for task(s) {missing}")
    try:
        net.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit this supernet: {exc}") from exc
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng.setstate(lists_to_tuples(state["sampler_rng"]))
    set_rng_state(state["rng"])
    for t, s in streams.items():
        s.load_state_dict(state["streams"][t])
    return int(state["step"]), [float(v) for v in state["history"]]

