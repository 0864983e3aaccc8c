"""FLOP report of a fixed policy: multiply-accumulates per task and for all tasks together,
with ``delta`` layers counted at their measured sparsity (the skipped delta computation shown).

Counted are the MACs of convolutions, transposed convolutions and linear layers (backbone and
heads); norms, activations and additions are left out, as usual. A delta layer (see
:mod:`automtl.delta.layers`) costs ``ρ_W · F`` for ``ΔW·x_base`` plus ``ρ_x · F`` for
``W_task·Δx``, where ``F`` is the MACs of the dense layer, ``ρ_W`` the density of ΔW and ``ρ_x``
the measured density of the thresholded delta activation (0 where the task reads the base's
input itself); ``F − (ρ_W + ρ_x)·F`` is skipped. Separate task networks with deltas
(:class:`~automtl.delta.DeltaNetworks`, e.g. ViT-MVT) are counted at their ``F.linear`` /
``F.conv2d`` calls, since such networks call them on their layers' weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from automtl.delta import DeltaLayer, DeltaNetworks

if TYPE_CHECKING:
    from automtl.supernet.model import MTLModel
    from automtl.supernet.policy import Policy


@dataclass
class FlopReport:
    """MACs of one policy on one input batch (see the module docstring)."""

    #: MACs each task needs when computed alone (a delta task includes the base layers it reads)
    per_task: dict[str, int]
    #: MACs of all tasks together: shared steps once, delta layers at their measured sparsity
    total: int
    #: ``total`` with every delta layer counted as a dense layer
    dense_total: int
    #: per task: MACs its delta layers would cost dense, and cost at the measured sparsity
    delta_dense: dict[str, int] = field(default_factory=dict)
    delta_effective: dict[str, int] = field(default_factory=dict)
    #: per task: measured density of its thresholded delta activations and of its ΔW
    activation_density: dict[str, float] = field(default_factory=dict)
    weight_density: dict[str, float] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """MACs the delta layers skip compared with dense layers."""
        return self.dense_total - self.total

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (with ``skipped``)."""
        return {"per_task": self.per_task, "total": self.total, "dense_total": self.dense_total,
                "skipped": self.skipped, "delta_dense": self.delta_dense,
                "delta_effective": self.delta_effective, "activation_density": self.activation_density,
                "weight_density": self.weight_density}


def layer_macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """MACs of one conv / transposed conv / linear call (0 for any other module)."""
    if isinstance(module, nn.Conv2d):
        w = module.weight
        return y.numel() * int(w.shape[1] * w.shape[2] * w.shape[3])
    if isinstance(module, nn.ConvTranspose2d):
        w = module.weight
        return x.numel() * int(w.shape[1] * w.shape[2] * w.shape[3])
    if isinstance(module, nn.Linear):
        return y.numel() * module.in_features
    return 0


def module_macs(module: nn.Module, *args: Any) -> tuple[Any, int]:
    """Output and MACs of ``module(*args)``, counting every conv / linear inside it."""
    total = [0]

    def hook(m: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            total[0] += layer_macs(m, inputs[0], output)

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        out = module(*args)
    finally:
        for h in handles:
            h.remove()
    return out, total[0]


def _delta_cost(layer: DeltaLayer, y: torch.Tensor) -> tuple[int, int, int, int]:
    """(dense MACs, effective MACs, non-zero activations, activations) of a delta layer call."""
    dense = layer.dense_macs(y)
    nnz, numel = layer.delta.last_activation or (0, 1)
    effective = round(layer.delta.density() * dense) + round(nnz / max(numel, 1) * dense)
    return dense, min(dense, effective), nnz, numel


@torch.no_grad()
def flop_report(model: MTLModel | DeltaNetworks, x: torch.Tensor, policy: Policy | None = None,
                tasks: Sequence[str] | None = None) -> FlopReport:
    """MACs of ``policy`` (default: the model's) for ``tasks`` on batch ``x`` (run in eval mode);
    for separate task networks with deltas (:class:`~automtl.delta.DeltaNetworks`, whose
    structure is fixed) :func:`networks_flop_report`."""
    if isinstance(model, DeltaNetworks):
        return networks_flop_report(model, x)
    policy = model._resolve_policy(policy)
    tasks = tuple(tasks) if tasks else tuple(model.tasks)
    program = model.program(policy, tasks)
    modules = model._program(policy, tasks)[1]
    was_training = model.training
    model.eval()
    try:
        env: list[Any] = [None] * program.n_slots
        env[0] = x
        dense: dict[int, int] = {}
        effective: dict[int, int] = {}
        act: dict[int, tuple[int, int]] = {}
        for step, module in zip(program.steps, modules):
            ins = [env[i] for i in step.inputs]
            y = module(*ins)
            env[step.out] = y
            if isinstance(module, DeltaLayer):
                d, e, nnz, numel = _delta_cost(module, y)
                dense[id(step)], effective[id(step)], act[id(step)] = d, e, (nnz, numel)
            else:
                dense[id(step)] = effective[id(step)] = layer_macs(module, ins[0], y) if ins else 0
        heads: dict[str, int] = {}
        for t, slots in program.outputs.items():
            feats = [env[i] for i in slots]
            heads[t] = module_macs(model.heads[t], *feats)[1]
    finally:
        model.train(was_training)
    report = FlopReport(per_task={}, total=sum(effective.values()) + sum(heads.values()),
                        dense_total=sum(dense.values()) + sum(heads.values()))
    for t in tasks:
        steps = program.prune([t]).steps
        report.per_task[t] = sum(effective[id(s)] for s in steps) + heads[t]
        own = [s for s in steps if s.ref[0] == "delta"]
        if own:
            report.delta_dense[t] = sum(dense[id(s)] for s in own)
            report.delta_effective[t] = sum(effective[id(s)] for s in own)
            nnz = sum(act[id(s)][0] for s in own)
            numel = sum(act[id(s)][1] for s in own if act[id(s)][0] or s.inputs[0] != s.inputs[1])
            report.activation_density[t] = nnz / numel if numel else 0.0
            deltas = [model.module_of(s.ref) for s in own]
            size = sum(d.numel for d in deltas)  # type: ignore[misc]
            report.weight_density[t] = sum(d.density() * d.numel for d in deltas) / size  # type: ignore[operator]
    return report


class _FunctionalMacs(TorchFunctionMode):
    """MACs of every ``F.linear`` / ``F.conv2d`` call, per the task whose network runs (networks
    such as ViT-MVT call them on their layers' weights, so module hooks would miss them); calls
    inside a delta layer are left to the layer's own count."""

    def __init__(self) -> None:
        super().__init__()
        self.task: str | None = None
        self.inside = 0
        self.macs: dict[str, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (func is F.linear or func is F.conv2d) and self.task is not None and not self.inside:
            w = args[1] if len(args) > 1 else kwargs["weight"]
            self.macs[self.task] = self.macs.get(self.task, 0) + out.numel() * math.prod(w.shape[1:])
        return out


@torch.no_grad()
def networks_flop_report(model: DeltaNetworks, x: torch.Tensor) -> FlopReport:
    """MACs of :meth:`DeltaNetworks.forward_all` on batch ``x`` (eval mode): the base network
    once, each sub-task's own layers, and its delta layers at their measured sparsity. A
    sub-task's ``per_task`` includes the base network, whose activations its deltas read."""
    counter = _FunctionalMacs()
    delta_cost: dict[str, list[tuple[DeltaLayer, int, int, int, int]]] = {t: [] for t in model.tasks}

    def enter_task(task: str) -> Any:
        def hook(*_: Any) -> None:
            counter.task = task
        return hook

    def enter_delta(*_: Any) -> None:
        counter.inside += 1

    def leave_delta(layer: nn.Module, _: Any, y: Any) -> None:
        counter.inside -= 1
        assert isinstance(layer, DeltaLayer) and counter.task is not None
        delta_cost[counter.task].append((layer, *_delta_cost(layer, y)))

    handles = [model.nets[t].register_forward_pre_hook(enter_task(t)) for t in model.tasks]
    for layer in model.delta_layers():
        handles += [layer.register_forward_pre_hook(enter_delta), layer.register_forward_hook(leave_delta)]
    was_training = model.training
    model.eval()
    try:
        with counter:
            model.forward_all(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    base = counter.macs.get(model.base, 0)
    report = FlopReport(per_task={model.base: base}, total=base, dense_total=base)
    for t in model.tasks:
        if t == model.base:
            continue
        own, costs = counter.macs.get(t, 0), delta_cost[t]
        dense, effective = sum(c[1] for c in costs), sum(c[2] for c in costs)
        report.per_task[t] = base + own + effective
        report.total += own + effective
        report.dense_total += own + dense
        report.delta_dense[t], report.delta_effective[t] = dense, effective
        numel = sum(c[4] for c in costs)
        report.activation_density[t] = sum(c[3] for c in costs) / numel if numel else 0.0
        deltas = list({id(c[0].delta): c[0].delta for c in costs}.values())
        size = sum(d.numel for d in deltas)
        report.weight_density[t] = sum(d.density() * d.numel for d in deltas) / size if size else 0.0
    return report
