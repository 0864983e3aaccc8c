"""Routing of a mixture-of-experts layer: M3ViT's noisy top-k gate, its balance loss, and the
two router designs (one gate per task; one shared gate fed the token and a task embedding).

Gating follows M3ViT's default (``noisy_vmoe``): Gaussian noise of std ``noise_std / E`` on
the logits in training, softmax over all ``E`` experts, then the top ``k``; the kept
probabilities are the gates, not renormalised unless asked. The balance loss of a layer is
cv²(importance) + cv²(load) with cv² = var / mean², zero exactly when both are uniform.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.errors import ArchError, UnknownTaskError

from ._config import MoESettings


@dataclass
class Routing:
    """Where each token goes: chosen experts (best first), their gates, the probabilities
    over all experts and each expert's load."""

    #: (N, k) expert indices per token
    idx: Tensor
    #: (N, k) weights of the chosen experts' outputs
    gates: Tensor
    #: (N, E) softmax over every expert (of the noisy logits in training)
    probs: Tensor
    #: (E,) tokens per expert: a smooth estimate under training noise, else the counts
    load: Tensor


def noisy_top_k(logits: Tensor, k: int, *, noise_std: float = 1.0, training: bool = False,
                renormalize: bool = False) -> Routing:
    """Route ``(N, E)`` router logits to the top ``k`` experts (M3ViT's ``noisy_vmoe`` gate).

    In training with ``noise_std > 0`` the load is Shazeer et al.'s smooth estimate (the
    probability that each expert stays in the top k under re-drawn noise), so the balance
    loss has a gradient; otherwise it is the count of tokens routed to each expert.
    """
    n_exp = logits.shape[-1]
    if not 1 <= k <= n_exp:
        raise ArchError(f"top-k {k} must be between 1 and the {n_exp} experts", key="top_k", value=k)
    std = noise_std / n_exp
    noisy = logits + torch.randn_like(logits) * std if training and std > 0 else logits
    probs = torch.softmax(noisy, dim=-1)
    top, idx = noisy.topk(min(k + 1, n_exp), dim=-1)
    idx = idx[:, :k]
    gates = probs.gather(1, idx)
    if renormalize:
        gates = gates / gates.sum(-1, keepdim=True)
    if training and std > 0 and k < n_exp:
        # an expert in the top k stays there while it beats the (k+1)-th value, one outside
        # enters when it beats the k-th: P = Φ((clean − threshold) / std)
        inside = noisy >= top[:, k - 1:k]
        threshold = torch.where(inside, top[:, k:k + 1], top[:, k - 1:k])
        load = torch.special.ndtr((logits - threshold) / std).sum(0)
    else:
        load = torch.bincount(idx.reshape(-1), minlength=n_exp).to(probs.dtype)
    return Routing(idx, gates, probs, load)


def cv_squared(x: Tensor) -> Tensor:
    """Squared coefficient of variation ``var / mean²`` (0 for a single value)."""
    x = x.float()
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + 1e-10)


def balance_loss(routing: Routing) -> Tensor:
    """cv²(importance) + cv²(load): importance is each expert's summed probability."""
    return cv_squared(routing.probs.sum(0)) + cv_squared(routing.load)


def _trunc(*shape: int) -> nn.Parameter:
    w = torch.empty(*shape)
    nn.init.trunc_normal_(w, std=0.02)
    return nn.Parameter(w)


class MultiGateRouter(nn.Module):
    """One linear gate (no bias) per task: task ``t``'s logits are ``W_t · x``."""

    def __init__(self, dim: int, experts: int, tasks: Sequence[str]) -> None:
        super().__init__()
        self.dim, self.experts, self.tasks = dim, experts, tuple(tasks)
        self.weight = nn.ParameterDict({t: _trunc(experts, dim) for t in self.tasks})

    def _check(self, task: str) -> None:
        if task not in self.weight:
            raise UnknownTaskError(f"unknown task {task!r}; the router has {list(self.tasks)}")

    def logits(self, x: Tensor, task: str, dim: int, experts: int) -> Tensor:
        """``(N, experts)`` logits of the leading ``experts`` gates over the leading ``dim``
        features of ``x``."""
        self._check(task)
        w = self.weight[task]
        return F.linear(x, w if (experts, dim) == tuple(w.shape) else w[:experts, :dim])

    def export(self, dim: int, experts: int, tasks: Sequence[str]) -> MultiGateRouter:
        """A router of exactly ``dim × experts`` for ``tasks``, holding copies of the slices."""
        for t in tasks:
            self._check(t)
        out = MultiGateRouter(dim, experts, tasks).to(next(iter(self.weight.values())).device)
        with torch.no_grad():
            for t in tasks:
                out.weight[t].copy_(self.weight[t][:experts, :dim])
        return out


class TaskConditionedRouter(nn.Module):
    """One gate (no bias) over the token concatenated with a task embedding: one-hot (width
    = the number of tasks, nothing learned) or dense (a learned vector per task).

    The weight's first ``dim`` columns read the token, the rest the embedding, so the
    logits are ``W[:, :dim] · x + W[:, dim:] · e_t`` (for a one-hot ``e_t``, one column).
    """

    def __init__(self, dim: int, experts: int, tasks: Sequence[str], *, embed: str = "onehot",
                 embed_dim: int = 32, width: int | None = None,
                 columns: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.dim, self.experts, self.tasks, self.embed = dim, experts, tuple(tasks), embed
        if width is None:
            width = len(self.tasks) if embed == "onehot" else embed_dim
        #: one-hot: the column of each task's one (kept when a subset of tasks is exported)
        self.columns = dict(columns) if columns is not None else {t: j for j, t in enumerate(self.tasks)}
        self.weight = _trunc(experts, dim + width)
        self.task_embedding = nn.ParameterDict(
            {t: _trunc(width) for t in self.tasks} if embed == "dense" else {})

    def _check(self, task: str) -> None:
        if task not in self.tasks:
            raise UnknownTaskError(f"unknown task {task!r}; the router has {list(self.tasks)}")

    def logits(self, x: Tensor, task: str, dim: int, experts: int) -> Tensor:
        """``(N, experts)`` logits of the leading ``experts`` gates for the leading ``dim``
        token features and ``task``'s embedding."""
        self._check(task)
        w = self.weight[:experts]
        token = F.linear(x, w[:, :dim])
        if self.embed == "onehot":
            return token + w[:, self.dim + self.columns[task]]
        return token + F.linear(self.task_embedding[task], w[:, self.dim:])

    def export(self, dim: int, experts: int, tasks: Sequence[str]) -> TaskConditionedRouter:
        """A router of ``dim`` token features and ``experts`` gates serving ``tasks`` (one-hot
        columns keep their positions; a dense embedding keeps those tasks' vectors)."""
        for t in tasks:
            self._check(t)
        w = self.weight.detach()
        cols = {t: self.columns[t] for t in tasks}
        out = TaskConditionedRouter(dim, experts, tasks, embed=self.embed, width=w.shape[1] - self.dim,
                                    columns=cols).to(w.device)
        with torch.no_grad():
            out.weight.copy_(torch.cat([w[:experts, :dim], w[:experts, self.dim:]], 1))
            for t in out.task_embedding:
                out.task_embedding[t].copy_(self.task_embedding[t])
        return out


Router = MultiGateRouter | TaskConditionedRouter


def build_router(settings: MoESettings, dim: int, experts: int, tasks: Sequence[str]) -> Router:
    """The router design ``settings.router`` for ``tasks``."""
    if settings.router == "multi_gate":
        return MultiGateRouter(dim, experts, tasks)
    return TaskConditionedRouter(dim, experts, tasks, embed=settings.task_embed,
                                 embed_dim=settings.task_embed_dim)


def capacity(factor: float | None, tokens: int, k: int, experts: int) -> int | None:
    """Routes each expert takes per forward: ``ceil(factor · tokens · k / experts)``."""
    return None if factor is None else max(1, math.ceil(factor * tokens * k / experts))
