"""``PolicyLayer``: one weighted layer with its share / specialize / skip branches (and, once
added, the sparse weight deltas of the ``delta`` choice)."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from automtl.delta import WeightDelta, supports_delta
from automtl.graph.ir import Node
from automtl.graph.layers import build_layer
from automtl.supernet._spec import UnitSpec

SHARED = "shared"  # ModuleDict key of a norm that all tasks use


def _norm_dict(norm: nn.Module, tasks: Sequence[str], per_task: bool) -> nn.ModuleDict:
    if per_task:
        return nn.ModuleDict({t: copy.deepcopy(norm) for t in tasks})
    return nn.ModuleDict({SHARED: norm})


def _proj_norm(spec: UnitSpec, norm_node: Node | None) -> nn.Module:
    attrs = {"num_features": spec.proj_attrs["out_channels"], "eps": 1e-5, "momentum": 0.1, "affine": True,
             "track_running_stats": True}
    if norm_node is not None and norm_node.op == "batch_norm":
        attrs.update({k: norm_node.attrs[k] for k in ("eps", "momentum", "track_running_stats")
                      if k in norm_node.attrs})
    return build_layer(Node("proj_norm", "batch_norm", (), attrs))


class PolicyLayer(nn.Module):
    """A weighted layer (and the norm after it) for every task.

    * ``common``: the shared weight; ``share_norm[task or "shared"]`` its norm.
    * ``specific[task]``: a task-owned copy of the weight (initialised from ``common``) and
      ``spec_norm[task]`` its norm.
    * ``proj`` / ``proj_norm``: the skip projection (``None`` where skip is the identity).
    * ``delta[task]`` / ``delta_norm[task]``: the task's sparse weight delta on the base task's
      weight and its norm (``None`` until :meth:`add_deltas`; old checkpoints stay loadable).
    """

    def __init__(self, spec: UnitSpec, tasks: Sequence[str], common: nn.Module, norm: nn.Module | None,
                 norm_node: Node | None) -> None:
        super().__init__()
        self.spec = spec
        self.common = common
        self.specific = nn.ModuleDict({t: copy.deepcopy(common) for t in tasks})
        self.share_norm = _norm_dict(norm, tasks, spec.norm_per_task) if norm is not None else None
        self.spec_norm = nn.ModuleDict({t: copy.deepcopy(norm) for t in tasks}) if norm is not None else None
        self.proj: nn.Module | None = None
        self.proj_norm: nn.ModuleDict | None = None
        if spec.skip_ok and spec.proj is not None:
            op = spec.proj
            self.proj = build_layer(Node("proj", op, (), dict(spec.proj_attrs)))
            if spec.proj_has_norm:
                self.proj_norm = _norm_dict(_proj_norm(spec, norm_node), tasks, spec.proj_norm_per_task)
        self.delta: nn.ModuleDict | None = None
        self.delta_norm: nn.ModuleDict | None = None

    # ---- deltas ------------------------------------------------------------------------------
    def delta_capable(self) -> bool:
        """Whether this layer can carry deltas (a linear or zero-padded 2-d convolution)."""
        return supports_delta(self.common)

    def add_deltas(self, tasks: Sequence[str], **delta_kwargs: object) -> None:
        """Give each of ``tasks`` a zero :class:`WeightDelta` (and its own copy of the norm)."""
        weight = cast(torch.Tensor, self.common.weight)
        bias = cast("torch.Tensor | None", self.common.bias)
        deltas = self.delta if self.delta is not None else nn.ModuleDict()
        norms = self.delta_norm if self.delta_norm is not None else nn.ModuleDict()
        for t in tasks:
            if t in deltas:
                continue
            deltas[t] = WeightDelta(tuple(weight.shape), tuple(bias.shape) if bias is not None else None,
                                    **delta_kwargs).to(weight.device)  # type: ignore[arg-type]
            if self.share_norm is not None:
                norms[t] = copy.deepcopy(self.share_norm[self.share_owner(t) or SHARED])
        self.delta = deltas
        self.delta_norm = norms if self.share_norm is not None else None

    def has_delta(self, task: str) -> bool:
        """Whether ``task`` has a delta at this layer."""
        return self.delta is not None and task in self.delta

    # ---- module lookup (used by planners and the compiler) -----------------------------------
    def share_owner(self, task: str) -> str:
        return task if self.spec.norm_per_task else ""

    def proj_owner(self, task: str) -> str:
        return task if self.spec.proj_norm_per_task else ""

    def part(self, kind: str, owner: str) -> nn.Module:
        """The module of a reference ``(kind, layer, owner)``; KeyError for a part this layer lacks."""
        if kind == "common":
            return self.common
        if kind == "specific":
            return self.specific[owner]
        if kind == "share_norm" and self.share_norm is not None:
            return self.share_norm[owner or SHARED]
        if kind == "spec_norm" and self.spec_norm is not None:
            return self.spec_norm[owner]
        if kind == "proj" and self.proj is not None:
            return self.proj
        if kind == "proj_norm" and self.proj_norm is not None:
            return self.proj_norm[owner or SHARED]
        if kind == "delta" and self.delta is not None:
            return self.delta[owner]
        if kind == "delta_norm" and self.delta_norm is not None:
            return self.delta_norm[owner]
        raise KeyError(kind)

    # ---- execution --------------------------------------------------------------------------
    def share(self, x: torch.Tensor, task: str) -> torch.Tensor:
        y = self.common(x)
        return self.share_norm[self.share_owner(task) or SHARED](y) if self.share_norm is not None else y

    def specialize(self, x: torch.Tensor, task: str) -> torch.Tensor:
        y = self.specific[task](x)
        return self.spec_norm[task](y) if self.spec_norm is not None else y

    def skip(self, x: torch.Tensor, task: str) -> torch.Tensor:
        if self.proj is None:
            return x
        y = self.proj(x)
        return self.proj_norm[self.proj_owner(task) or SHARED](y) if self.proj_norm is not None else y

    def branch(self, x: torch.Tensor, choice: int, task: str) -> torch.Tensor:
        """Output of one branch (0 share, 1 specialize, 2 skip)."""
        if choice == 0:
            return self.share(x, task)
        if choice == 1:
            return self.specialize(x, task)
        return self.skip(x, task)

    def mix(self, x: torch.Tensor, weights: torch.Tensor, task: str, active: Sequence[bool]) -> torch.Tensor:
        """``Σ_i weights[i] · branch_i(x)`` over the ``active`` branches."""
        out: torch.Tensor | None = None
        for i in range(3):
            if not active[i]:
                continue
            y = self.branch(x, i, task) * weights[i]
            out = y if out is None else out + y
        assert out is not None
        return out
