"""MLoRE (Yang et al., CVPR 2024): a mixture-of-low-rank-experts decoder for dense multi-task
prediction on backbone features of several levels.

Per level: a shared 1×1 projection to ``channels``, then ``blocks`` stacked :class:`MLoReBlock`
applied per task; the task features of all levels are upsampled to the finest level and a
task-specific head predicts. A block's output for task ``t`` on input ``o`` is
``Conv1×1_t(GELU(BN'_t(BN_t(Σ_i p_i·Expert_i(o)) + m_t·TaskExpert_t(o) + SharedConv(o))))``
with linear low-rank experts Conv3×3(C→r_i)·Conv1×1(r_i→C) of different ranks, ``p`` and
``m_t`` from a task router that routes per image (top-k of the expert weights), and a
load-balancing loss handed to the trainer through :meth:`MLoReDecoder.auxiliary_losses`.
Everything before the GELU is linear, so at inference it folds into one 3×3 convolution per
task and image (:mod:`automtl.heads.mlore_fused`, ``decoder.reparameterize()``).

Example:
    >>> dec = MLoReDecoder([16, 32], {"seg": 5, "depth": 1}, channels=16, ranks=(4, 8, 12), top_k=2)
    >>> feats = [torch.randn(2, 16, 16, 16), torch.randn(2, 32, 8, 8)]
    >>> dec(feats, "seg").shape
    torch.Size([2, 5, 16, 16])
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from automtl.checks import check_int, check_ints, check_number
from automtl.errors import ConfigError, ModelError, UnknownTaskError
from automtl.registry import HEADS

if TYPE_CHECKING:
    from automtl.heads.mlore_fused import FusedMLoReDecoder

__all__ = ["MASKS", "MLoReBlock", "MLoReDecoder", "TaskRouter", "as_size", "balance_loss", "check_features",
           "finish", "top_k_weights"]

#: where the top-k mask of the routing weights is applied: on the logits (the kept weights sum
#: to 1) or on the softmax output (the kept weights keep their full-softmax values)
MASKS = ("before", "after")
#: MLoRE's published expert ranks: 15 experts, 16 … 128 in steps of 8
DEFAULT_RANKS = tuple(range(16, 129, 8))


def balance_loss(weights: torch.Tensor) -> torch.Tensor:
    """``(std/mean)²`` of the mean routing weight of each expert over every leading dim.

    ``weights``: ``[..., E]``. Zero exactly when every expert gets the same mean weight (its
    minimum); ``E − 1`` when one expert takes all the weight (its maximum).
    """
    imp = weights.reshape(-1, weights.shape[-1]).mean(0)
    return imp.var(correction=0) / imp.mean().pow(2).clamp_min(1e-12)


def top_k_weights(logits: torch.Tensor, k: int, mask: str = "before") -> torch.Tensor:
    """Softmax routing weights with the smallest ``E − k`` set to zero (``mask``: see :data:`MASKS`)."""
    if k >= logits.shape[-1]:
        return logits.softmax(-1)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
    if mask == "before":
        return logits.masked_fill(~keep, float("-inf")).softmax(-1)
    return logits.softmax(-1) * keep


class TaskRouter(nn.Module):
    """One task's per-image router: pooled features → expert logits (plus learned-scale noise
    while training), top-k weights ``p`` [B, E] and the task-expert gate ``m`` [B, 1]."""

    def __init__(self, channels: int, experts: int, top_k: int, *, mask: str = "before",
                 noise: bool = True) -> None:
        super().__init__()
        self.top_k, self.mask = top_k, mask
        self.logits = nn.Linear(channels, experts)
        self.noise = nn.Linear(channels, experts) if noise else None
        self.gate = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = x.mean((2, 3))
        logits = self.logits(pooled)
        if self.training and self.noise is not None:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(pooled))
        return top_k_weights(logits, self.top_k, self.mask), torch.sigmoid(self.gate(pooled))


class MLoReBlock(nn.Module):
    """One MLoRE block: low-rank experts shared by the tasks, a router, a task expert and
    norms per task, a 3×3 conv shared by all tasks.

    The experts are stored stacked: ``down`` (Conv3×3 C→Σr) holds every expert's first
    convolution, ``up`` (Conv1×1 Σr→C) every expert's second (expert ``i`` owns channels
    ``offsets[i]:offsets[i+1]``); scaling each expert's channels by its weight between the
    two computes ``Σ_i p_i·Expert_i(o)`` exactly, for every image in one pass.
    """

    expert_of: torch.Tensor  # buffer: the expert of each of the Σr low-rank channels

    def __init__(self, channels: int, tasks: Sequence[str], ranks: Sequence[int], top_k: int, *,
                 mask: str = "before", noise: bool = True, stop_grad_shared: bool = True) -> None:
        super().__init__()
        c, total = channels, sum(ranks)
        self.channels, self.tasks, self.ranks = c, list(tasks), tuple(ranks)
        self.stop_grad_shared = stop_grad_shared
        self.down = nn.Conv2d(c, total, 3, padding=1, bias=False)
        self.up = nn.Conv2d(total, c, 1, bias=False)
        self.shared = nn.Conv2d(c, c, 3, padding=1)
        self.routers = nn.ModuleDict({t: TaskRouter(c, len(ranks), top_k, mask=mask, noise=noise)
                                      for t in tasks})
        self.task_expert = nn.ModuleDict({t: nn.Conv2d(c, c, 3, padding=1) for t in tasks})
        self.expert_norm = nn.ModuleDict({t: nn.BatchNorm2d(c) for t in tasks})
        self.out_norm = nn.ModuleDict({t: nn.BatchNorm2d(c) for t in tasks})
        self.out_proj = nn.ModuleDict({t: nn.Conv2d(c, c, 1) for t in tasks})
        owner = torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks))
        self.register_buffer("expert_of", owner, persistent=False)
        #: routing weights of the forwards since the decoder's last reset (for the balance loss)
        self.routing: list[torch.Tensor] = []

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["routing"] = []  # graph-attached tensors of the last forward: neither copied nor pickled
        return state

    @property
    def offsets(self) -> list[int]:
        """Start of each expert's channels in ``down``/``up`` (and the end, last)."""
        out = [0]
        for r in self.ranks:
            out.append(out[-1] + r)
        return out

    def expert_weights(self) -> torch.Tensor:
        """Each expert as one 3×3 convolution C→C: ``[E, C, C, 3, 3]`` (``up_i ∘ down_i``)."""
        c, o = self.channels, self.offsets
        down = self.down.weight.reshape(-1, c * 9)
        up = self.up.weight.reshape(c, -1)
        return torch.stack([(up[:, o[i]:o[i + 1]] @ down[o[i]:o[i + 1]]).reshape(c, c, 3, 3)
                            for i in range(len(self.ranks))])

    def task_parts(self, task: str) -> list[nn.Module]:
        """The modules only ``task`` uses."""
        return [self.routers[task], self.task_expert[task], self.expert_norm[task], self.out_norm[task],
                self.out_proj[task]]

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        p, m = cast(TaskRouter, self.routers[task])(x)
        self.routing.append(p)
        mixed = self.up(self.down(x) * p[:, self.expert_of, None, None])
        shared = self.shared(x.detach() if self.stop_grad_shared else x)
        z = self.expert_norm[task](mixed) + m[:, :, None, None] * self.task_expert[task](x) + shared
        return self.out_proj[task](F.gelu(self.out_norm[task](z)))


def _check_classes(num_classes: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(num_classes, Mapping) or not num_classes:
        raise ConfigError("must be a non-empty {task: output channels} dict", key="num_classes",
                          value=num_classes)
    out = {}
    for t, n in num_classes.items():
        if not isinstance(t, str) or not t:
            raise ConfigError("task names must be non-empty strings", key="num_classes", value=t)
        out[t] = check_int(n, f"num_classes.{t}", lo=1)
    return out


@HEADS.register_module()
class MLoReDecoder(nn.Module):
    """The MLoRE decoder over ``len(in_channels)`` feature levels for the tasks of ``num_classes``.

    Args:
        in_channels: channels of each backbone level, in the order the features are passed.
        num_classes: ``{task: output channels}``.
        channels: decoder width C (every rank must be ≤ C).
        ranks: one rank per expert (MLoRE: 15 experts, 16 … 128 in steps of 8).
        top_k: experts kept per image (MLoRE: 9 of 15).
        blocks: stacked MLoRE blocks per level (MLoRE: 2).
        mask: ``"before"`` or ``"after"`` softmax top-k masking.
        noise: learned-scale noise on the router logits while training.
        stop_grad_shared: the shared 3×3 conv sees its input with gradients stopped.
        balance_weight: weight of the load-balancing loss (MLoRE: ~3e-4; 0 turns it off).
        out_size: resize predictions to this size (None: the finest level's size).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: Mapping[str, int], *, channels: int = 128,
                 ranks: Sequence[int] = DEFAULT_RANKS, top_k: int = 9, blocks: int = 2, mask: str = "before",
                 noise: bool = True, stop_grad_shared: bool = True, balance_weight: float = 3e-4,
                 out_size: int | Sequence[int] | None = None) -> None:
        super().__init__()
        levels = check_ints(in_channels, "in_channels", lo=1)
        classes = _check_classes(num_classes)
        c = check_int(channels, "channels", lo=1)
        ranks = check_ints(ranks, "ranks", lo=1)
        for i, r in enumerate(ranks):
            if r > c:
                raise ConfigError(f"expert rank {r} exceeds the decoder channels {c}; ranks must be "
                                  f"between 1 and channels", key=f"ranks.{i}", value=r)
        self.top_k = check_int(top_k, "top_k", lo=1)
        if self.top_k > len(ranks):
            raise ConfigError(f"top_k={top_k} exceeds the {len(ranks)} experts; it must be between 1 "
                              f"and the number of experts", key="top_k", value=top_k)
        n_blocks = check_int(blocks, "blocks", lo=1)
        if mask not in MASKS:
            raise ConfigError(f"must be one of {MASKS}", key="mask", value=mask)
        for name, flag in (("noise", noise), ("stop_grad_shared", stop_grad_shared)):
            if not isinstance(flag, bool):
                raise ConfigError("must be True or False", key=name, value=flag)
        self.balance_weight = check_number(balance_weight, "balance_weight", lo=0)
        self.in_channels, self.channels, self.ranks, self.mask = levels, c, ranks, mask
        self.tasks = list(classes)
        self.num_classes = classes
        self._aux: dict[str, torch.Tensor] = {}
        self.out_size = as_size(out_size)
        self.proj = nn.ModuleList(nn.Sequential(nn.Conv2d(ci, c, 1, bias=False), nn.BatchNorm2d(c), nn.GELU())
                                  for ci in levels)
        self.levels = nn.ModuleList(
            nn.ModuleList(MLoReBlock(c, self.tasks, ranks, self.top_k, mask=mask, noise=noise,
                                     stop_grad_shared=stop_grad_shared) for _ in range(n_blocks))
            for _ in levels)
        self.predict = nn.ModuleDict({
            t: nn.Sequential(nn.Conv2d(len(levels) * c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                             nn.ReLU(), nn.Conv2d(c, n, 1))
            for t, n in classes.items()})

    # ---- structure --------------------------------------------------------------------------
    def blocks(self) -> list[MLoReBlock]:
        """Every MLoRE block, level by level."""
        return [cast(MLoReBlock, b) for level in self.levels for b in cast(nn.ModuleList, level)]

    def task_modules(self, task: str) -> nn.ModuleList:
        """The modules only ``task`` uses (its routers, task experts, norms and prediction head)."""
        self._check_task(task)
        parts = [m for b in self.blocks() for m in b.task_parts(task)]
        return nn.ModuleList([*parts, self.predict[task]])

    def count_params(self) -> dict[str, int]:
        """Parameters per task (shared parts included) and ``"total"`` (shared counted once)."""
        total = sum(p.numel() for p in self.parameters())
        own = {t: sum(p.numel() for p in self.task_modules(t).parameters()) for t in self.tasks}
        shared = total - sum(own.values())
        return {**{t: shared + n for t, n in own.items()}, "total": total}

    def _check_task(self, task: str) -> str:
        if task not in self.num_classes:
            raise UnknownTaskError(f"unknown task {task!r}; the decoder's tasks are {self.tasks}")
        return task

    # ---- forward ----------------------------------------------------------------------------
    def reset_routing(self) -> None:
        """Forget the routing weights kept for the balance loss (each forward starts with this)."""
        for b in self.blocks():
            b.routing = []

    def forward(self, feats: Sequence[torch.Tensor], task: str,
                out_size: int | Sequence[int] | None = None) -> torch.Tensor:
        """The prediction of ``task`` from one feature map per level."""
        check_features(feats, self.in_channels)
        self._check_task(task)
        self.reset_routing()
        out = self._predict(feats, task, out_size)
        self._aux = self._balance()
        return out

    def forward_all(self, feats: Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]],
                    tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{task: prediction}``; ``feats`` is one list of levels for all tasks or one per task.
        The balance loss then covers the routing of every task."""
        tasks = list(tasks) if tasks is not None else self.tasks
        self.reset_routing()
        out = {}
        for t in tasks:
            f = feats[t] if isinstance(feats, Mapping) else feats
            check_features(f, self.in_channels)
            out[self._check_task(t)] = self._predict(f, t, None)
        self._aux = self._balance()
        return out

    def _predict(self, feats: Sequence[torch.Tensor], task: str, out_size: int | Sequence[int] | None
                 ) -> torch.Tensor:
        return run_levels(feats, self.proj, self.levels, self.predict[task], task,
                          as_size(out_size) or self.out_size)

    def auxiliary_losses(self) -> dict[str, torch.Tensor]:
        """The weighted load-balancing loss of the latest forward (``{}`` before the first one or
        with ``balance_weight=0``): ``balance_weight`` · the sum over blocks of ``(std/mean)²`` of
        the mean routing weights over the forward's tasks and images."""
        return self._aux

    def _balance(self) -> dict[str, torch.Tensor]:
        if self.balance_weight == 0:
            return {}
        losses = [balance_loss(torch.cat(b.routing)) for b in self.blocks() if b.routing]
        return {"mlore_balance": self.balance_weight * torch.stack(losses).sum()} if losses else {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_aux"] = {}  # the latest forward's graph-attached loss: neither copied nor pickled
        return state

    def reparameterize(self) -> FusedMLoReDecoder:
        """The inference form: every block one 3×3 conv per task and image, BN folded
        (:class:`automtl.heads.mlore_fused.FusedMLoReDecoder`; same outputs in eval mode)."""
        from automtl.heads.mlore_fused import FusedMLoReDecoder

        return FusedMLoReDecoder(self)

    def extra_repr(self) -> str:
        return (f"levels={list(self.in_channels)}, tasks={self.tasks}, channels={self.channels}, "
                f"experts={len(self.ranks)}, top_k={self.top_k}, mask={self.mask!r}")


def check_features(feats: Sequence[torch.Tensor], in_channels: Sequence[int]) -> None:
    """:class:`ModelError` unless ``feats`` holds one ``[B, C_l, H, W]`` map per level."""
    if isinstance(feats, torch.Tensor) or len(feats) != len(in_channels):
        n = 1 if isinstance(feats, torch.Tensor) else len(feats)
        raise ModelError(f"MLoReDecoder expects {len(in_channels)} feature levels with channels "
                         f"{list(in_channels)}, got {n}")
    for i, (f, c) in enumerate(zip(feats, in_channels)):
        if f.dim() != 4 or f.shape[1] != c:
            raise ModelError(f"feature level {i} must be [B, {c}, H, W], got {tuple(f.shape)}")


def as_size(out_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``(h, w)`` of an int or pair (None stays None)."""
    if out_size is None:
        return None
    if isinstance(out_size, int):
        return (out_size, out_size)
    h, w = (int(s) for s in out_size)
    return (h, w)


def run_levels(feats: Sequence[torch.Tensor], proj: nn.ModuleList, levels: nn.ModuleList, predict: nn.Module,
               task: str, out_size: tuple[int, int] | None) -> torch.Tensor:
    """Each level's projection and blocks for ``task``, then :func:`finish` (multi-path and fused
    decoders alike)."""
    maps = []
    for f, p, level in zip(feats, proj, levels):
        y = p(f)
        for block in cast(nn.ModuleList, level):
            y = block(y, task)
        maps.append(y)
    return finish(maps, predict, out_size)


def finish(maps: Sequence[torch.Tensor], predict: nn.Module, size: tuple[int, int] | None) -> torch.Tensor:
    """Upsample every level's task features to the finest level, concatenate, predict, resize."""
    top = max(maps, key=lambda m: m.shape[-2] * m.shape[-1]).shape[-2:]
    ups = [m if m.shape[-2:] == top else F.interpolate(m, size=top, mode="bilinear", align_corners=False)
           for m in maps]
    y = predict(torch.cat(ups, dim=1))
    if size is not None and tuple(y.shape[-2:]) != size:
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
    return y
