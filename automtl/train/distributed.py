"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, nccl on GPU).

The trainer averages gradients itself (one flat all-reduce per optimiser step) instead of
wrapping the model in ``DistributedDataParallel``: the supernet's alternating policy/weight
steps, its per-task branches that are unused in a given step, and gradient-surgery weighting
methods (PCGrad, GradNorm, …) all produce gradients outside DDP's reducer assumptions. The
result is the same update DDP computes: the mean gradient over the global batch.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from automtl.workdir import lock_work_dir


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and device of this process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def env_rank() -> int:
    """This process's rank as ``torchrun`` sets it (``RANK``; 0 outside ``torchrun``), known
    before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def lock_main_work_dir(path: str | os.PathLike[str], *, purpose: str) -> AbstractContextManager[Any]:
    """The work-dir lock (:func:`automtl.workdir.lock_work_dir`) on rank 0, the one process that
    writes; a no-op context on the other ranks, which never contend for it."""
    if env_rank() != 0:
        return nullcontext()
    return lock_work_dir(Path(path), purpose=purpose)


def init_distributed(device: torch.device | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); else single process.

    Picks ``nccl`` when the device is CUDA and ``gloo`` otherwise, and returns this rank's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistInfo(), dev
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank), device


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical start)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            if isinstance(t, torch.Tensor) and t.numel():
                dist.broadcast(t, src=0)


def average_gradients(params: Iterable[nn.Parameter], world: int) -> None:
    """Replace each gradient by its mean over ranks; a parameter with a gradient on any rank gets one on all."""
    params = [p for p in params if p.requires_grad]
    if world <= 1 or not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    if not live:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in live:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def all_reduce_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    """Mean of ``values`` over ranks (identity in a single process)."""
    if world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


def barrier(world: int) -> None:
    """Wait for every rank (no-op in a single process)."""
    if world > 1:
        dist.barrier()
