"""Training an elastic supernet for search: uniform or sandwich sampling of subnets per step.

Each step samples subnets of the space (``uniform``: one random candidate; ``sandwich``: the
largest, the smallest and ``n_random`` random ones, gradients summed), and every task takes
one batch through every sampled subnet. Weights are entangled, so every subnet inherits them.
Sub-modules reporting ``auxiliary_losses()`` (mixture-of-experts balance losses) add them to
each task's loss after its forward, as the trainer does.
With ``checkpoint=PATH`` the run writes an atomic checkpoint every ``checkpoint_every`` steps
(weights, optimiser, schedule, sampler and global RNGs, data positions, loss history) through
:mod:`automtl.train.resume`, the trainer's resume path, and a rerun continues from it to the
same weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from automtl.errors import ConfigError, TrainingError
from automtl.io import atomic_write_text
from automtl.spaces.base import Candidate, SupernetSpace
from automtl.train.distributed import env_rank
from automtl.train.fingerprint import Fingerprint
from automtl.train.resume import Checkpointer, RandomState, TrainingState
from automtl.train.steps import AuxiliaryLosses, auxiliary_loss_modules
from automtl.train.streams import resumable_stream

__all__ = ["SAMPLINGS", "RUN", "train_supernet"]

LOG = logging.getLogger("automtl.train")
SAMPLINGS = ("uniform", "sandwich")
#: the run name a supernet checkpoint carries (a trainer phase's checkpoint is refused)
RUN = "supernet"


def _subnets(space: SupernetSpace, sampling: str, rng: random.Random, n_random: int) -> list[Candidate]:
    if sampling == "uniform":
        return [space.sample(rng)]
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


def train_supernet(net: nn.Module, space: SupernetSpace, train_loaders: Mapping[str, Iterable[Any]], *,
                   steps: int, lr: float = 1e-3, weight_decay: float = 0.05, sampling: str = "sandwich",
                   n_random: int = 2, criteria: Mapping[str, nn.Module] | None = None,
                   seed: int = 0, device: str | torch.device | None = None,
                   checkpoint: str | os.PathLike[str] | None = None,
                   checkpoint_every: int = 100, fingerprint: Fingerprint | None = None,
                   history_path: str | os.PathLike[str] | None = None) -> list[float]:
    """Train ``net`` for ``steps`` optimiser steps (AdamW); returns the mean loss per step.

    ``checkpoint``: a file to write every ``checkpoint_every`` steps and at the end; when it
    exists at the start, training continues from it (a finished run returns at once), unless
    its ``fingerprint`` (the run's settings) differs: :class:`CheckpointError` naming the keys.
    ``history_path``: a JSON file of the loss curve, rewritten after every checkpoint.
    Under ``torchrun`` only rank 0 writes. Raises :class:`TrainingError` naming the step and
    task on a non-finite loss.
    """
    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"space '{space.name}' has no supernet to train", key="space.type")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"unknown sampling {sampling!r}; use one of {SAMPLINGS}", key="sampling")
    tasks = tuple(space.tasks)
    if criteria is None:
        from automtl.train.losses import default_criteria

        criteria = default_criteria(tasks)
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    net.to(dev).train()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    streams = {t: resumable_stream(train_loaders[t], seed=seed, name=t) for t in tasks}
    aux_losses = AuxiliaryLosses(auxiliary_loss_modules(net))  # e.g. MoE balance losses
    state = TrainingState(RUN, steps, net, optimizers={"network": opt}, schedulers={"network": sched},
                          streams={"train": streams}, extras={"sampler": RandomState(rng)},
                          fingerprint=fingerprint)
    is_main = env_rank() == 0
    saver = Checkpointer(checkpoint, is_main=is_main) if checkpoint is not None else None
    if saver is not None and saver.exists():
        saver.restore(state)
        LOG.info("supernet training resumes at step %d/%d from %s", state.step, steps, checkpoint)
    for step in range(state.step, steps):
        batches = {t: streams[t].next() for t in tasks}
        opt.zero_grad(set_to_none=True)
        total, n = 0.0, 0
        for cand in _subnets(space, sampling, rng, n_random):
            space.activate(net, cand)
            for t in tasks:
                x, y = batches[t][0].to(dev), batches[t][1].to(dev)
                loss = criteria[t](space.forward(net, x, t), y)
                if not torch.isfinite(loss):
                    raise TrainingError(f"supernet training: non-finite loss at step {step}, "
                                        f"task '{t}'")
                aux = aux_losses.collect()  # joins this task's loss
                (loss + sum(aux.values()) if aux else loss).backward()
                total += float(loss.detach())
                n += 1
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        state.history.append(total / max(n, 1))
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            LOG.info("supernet step %d/%d loss %.4f", step + 1, steps, state.history[-1])
        state.step = step + 1
        state.complete = state.step == steps
        if saver is not None and (state.complete or (checkpoint_every and state.step % checkpoint_every == 0)):
            saver.save(state)
            if history_path is not None and is_main:
                atomic_write_text(history_path, json.dumps(state.history))
    net.eval()
    return list(state.history)
