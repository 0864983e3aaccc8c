"""M3ViT's task-routed mixture-of-experts FFN in plain PyTorch (no fastmoe, any device).

:class:`MoEFFN` holds ``E`` stacked experts (each Linear(d→h) → GELU → Linear(h→d)) and a
router (:mod:`._moe_gate`); each token of a task goes to its top-k experts, computed with
the reordered dispatch (:mod:`._moe_dispatch`). In the supernet it is elastic (the active
width, expert width and number of experts are leading slices); exported and pruned models
hold exact-size copies. In training each forward adds ``aux_weight · (cv²(importance) +
cv²(load))``; :meth:`MoEFFN.auxiliary_losses` returns the loss of its latest forward (the
trainers' auxiliary-loss protocol), or inside a model's ``forward_all`` the sum over the tasks'
forwards (:func:`accumulating`).

Example::

    moe = MoEFFN(192, 192, num_experts=16, top_k=4, tasks=("seg", "depth"))
    y = moe(torch.randn(8, 196, 192), "seg")          # (8, 196, 192)
    moe.auxiliary_losses()                             # {"moe_balance": tensor(…)} in training
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from automtl.errors import ArchError

from ._config import MoESettings
from ._moe_dispatch import DispatchStats, dispatch_reordered
from ._moe_gate import MultiGateRouter, Router, balance_loss, build_router, capacity, noisy_top_k


def _trunc(*shape: int) -> nn.Parameter:
    w = torch.empty(*shape)
    nn.init.trunc_normal_(w, std=0.02)
    return nn.Parameter(w)


class MoEFFN(nn.Module):
    """A mixture-of-experts FFN routed per task (multi-gate or task-conditioned router).

    ``kept`` (for a pruned layer): the router's expert ids whose weights are stored; routes
    to any other expert contribute nothing and are counted (``last_stats.missed``).
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, tasks: Sequence[str],
                 settings: MoESettings | None = None, *, name: str = "moe_balance",
                 kept: Sequence[int] | None = None) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ArchError(f"top-k {top_k} must be between 1 and the {num_experts} experts",
                            key="top_k", value=top_k)
        self.settings = settings if settings is not None else MoESettings()
        self.tasks = tuple(tasks)
        self.name = name
        stored = num_experts if kept is None else len(kept)
        self.w1, self.b1 = _trunc(stored, hidden, dim), nn.Parameter(torch.zeros(stored, hidden))
        self.w2, self.b2 = _trunc(stored, dim, hidden), nn.Parameter(torch.zeros(stored, dim))
        self.router: Router = build_router(self.settings, dim, num_experts, self.tasks)
        self.slot: Tensor | None
        if kept is None:
            self.slot = None
        else:
            slot = torch.full((num_experts,), -1, dtype=torch.long)
            slot[torch.as_tensor(list(kept), dtype=torch.long)] = torch.arange(stored)
            self.register_buffer("slot", slot)
        self.dim_max, self.hidden_max, self.experts_max = dim, hidden, num_experts
        self.dim, self.hidden, self.experts, self.top_k = dim, hidden, num_experts, top_k
        #: balance loss of the latest forward (summed over forwards while ``_accumulate``)
        self._aux: Tensor | None = None
        self._accumulate = False
        #: what the latest forward's dispatch did (routes, dropped, missed, per-expert counts)
        self.last_stats: DispatchStats | None = None
        #: called with the (B, N, k) expert indices of every forward while set (reports, pruning)
        self.recorder: Callable[[Tensor], None] | None = None

    @property
    def pruned(self) -> bool:
        """Whether only some experts' weights are stored."""
        return self.slot is not None

    def kept_experts(self) -> list[int]:
        """The router's expert ids whose weights are stored."""
        if self.slot is None:
            return list(range(self.experts))
        return [int(i) for i in torch.nonzero(self.slot >= 0).flatten()]

    def configure(self, dim: int, hidden: int, experts: int, top_k: int) -> None:
        """Activate the leading ``dim`` features, ``hidden`` units and ``experts`` experts."""
        if not (1 <= top_k <= experts <= self.experts_max) or dim > self.dim_max \
                or hidden > self.hidden_max:
            raise ArchError(f"MoE layer of {experts} experts, top-{top_k}, width {dim}, hidden "
                            f"{hidden} does not fit its {self.experts_max} experts of width "
                            f"{self.dim_max}, hidden {self.hidden_max} (top-k must be <= experts)",
                            key="top_k", value=top_k)
        if self.pruned and experts != self.experts_max:
            raise ArchError("a pruned MoE layer keeps its number of experts", key="num_experts",
                            value=experts)
        self.dim, self.hidden, self.experts, self.top_k = dim, hidden, experts, top_k

    def _weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        e, h, d = self.experts, self.hidden, self.dim
        if self.pruned or (e, h, d) == (self.experts_max, self.hidden_max, self.dim_max):
            return self.w1, self.b1, self.w2, self.b2
        return self.w1[:e, :h, :d], self.b1[:e, :h], self.w2[:e, :d, :h], self.b2[:e, :d]

    def forward(self, x: Tensor, task: str) -> Tensor:
        """``x`` (…, dim) routed for ``task``; same shape out."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        s = self.settings
        logits = self.router.logits(flat, task, self.dim, self.experts)
        routing = noisy_top_k(logits, self.top_k, noise_std=s.noise_std, training=self.training,
                              renormalize=s.renormalize)
        if self.training and s.aux_weight > 0:
            loss = s.aux_weight * balance_loss(routing)
            self._aux = loss if self._aux is None or not self._accumulate else self._aux + loss
        if self.recorder is not None:
            self.recorder(routing.idx.detach().view(*shape[:-1], self.top_k))
        cap = capacity(s.capacity_factor, flat.shape[0], self.top_k, self.experts)
        out, self.last_stats = dispatch_reordered(flat, routing.idx, routing.gates, *self._weights(),
                                                  capacity=cap, slot=self.slot)
        return out.view(shape)

    def auxiliary_losses(self) -> dict[str, Tensor]:
        """``{name: balance loss}`` of the latest forward (of every task's forward inside a
        model's ``forward_all``); empty before any training-mode forward and, once the owning
        model's forward has begun, when the layer did not run in it."""
        return {} if self._aux is None else {self.name: self._aux}

    def reset_auxiliary(self) -> None:
        """Forget the balance losses gathered so far (called as a model's forward begins)."""
        self._aux = None

    def export(self, tasks: Sequence[str]) -> MoEFFN:
        """An exact-size copy of the active slices with the routers of ``tasks``."""
        out = MoEFFN(self.dim, self.hidden, self.experts, self.top_k, tasks, self.settings,
                     name=self.name, kept=None if not self.pruned else self.kept_experts())
        out.router = self.router.export(self.dim, self.experts, tasks)
        w1, b1, w2, b2 = self._weights()
        with torch.no_grad():
            for dst, src in ((out.w1, w1), (out.b1, b1), (out.w2, w2), (out.b2, b2)):
                dst.copy_(src)
        return out.to(self.w1.device).train(self.training)

    def prune(self, keep: Sequence[int], task: str) -> MoEFFN:
        """A copy serving ``task`` alone that stores only the experts ``keep`` (router ids);
        the router is kept whole, so the kept experts' gates are unchanged."""
        keep = sorted(set(int(i) for i in keep))
        have = self.kept_experts()
        if not keep or any(i not in have for i in keep):
            raise ArchError(f"experts to keep {keep} must be a non-empty subset of {have}",
                            key="experts", value=keep)
        out = MoEFFN(self.dim, self.hidden, self.experts, self.top_k, (task,), self.settings,
                     name=self.name, kept=keep)
        out.router = self.router.export(self.dim, self.experts, (task,))
        w1, b1, w2, b2 = self._weights()
        rows = torch.as_tensor([have.index(i) for i in keep], dtype=torch.long, device=w1.device)
        with torch.no_grad():
            for dst, src in ((out.w1, w1), (out.b1, b1), (out.w2, w2), (out.b2, b2)):
                dst.copy_(src.index_select(0, rows))
        return out.to(self.w1.device).train(self.training)

    def expert_params(self) -> int:
        """Parameters of one expert at the active widths."""
        return 2 * self.dim * self.hidden + self.hidden + self.dim

    def extra_repr(self) -> str:
        router = "multi_gate" if isinstance(self.router, MultiGateRouter) else "task_conditioned"
        kept = f", kept={len(self.kept_experts())}" if self.pruned else ""
        return (f"dim={self.dim}, hidden={self.hidden}, experts={self.experts}, top_k={self.top_k}, "
                f"router={router}, tasks={list(self.tasks)}{kept}")


class TaskRoutedMoE(nn.Module):
    """One task's view of a shared MoE layer: the experts are shared, the routing is the task's
    (what an exported task network holds, so blocks after an MoE layer never merge tasks)."""

    def __init__(self, moe: MoEFFN, task: str) -> None:
        super().__init__()
        self.moe, self.task = moe, task

    def forward(self, x: Tensor) -> Tensor:
        return self.moe(x, self.task)


def moe_layers(model: nn.Module) -> list[MoEFFN]:
    """The distinct MoE layers inside ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, MoEFFN)]


def reset_auxiliary(layers: Sequence[MoEFFN]) -> None:
    """Start a new forward: forget the balance losses the layers hold (a layer that does not
    run in it then reports none)."""
    for m in layers:
        m._aux = None


@contextmanager
def accumulating(layers: Sequence[MoEFFN]) -> Iterator[None]:
    """Within the block, each layer's balance losses add up over its forwards (one per task
    in a ``forward_all``); they start from none."""
    reset_auxiliary(layers)
    for m in layers:
        m._accumulate = True
    try:
        yield
    finally:
        for m in layers:
            m._accumulate = False
