"""The ``delta`` choice inside the supernet: which layers carry deltas, binding a program's
delta steps to the base task's weights, and state dicts whose delta layout follows the saved one.

A delta step of a program reads ``(task input, base input, base pre-norm output)``; its module
is a :class:`~automtl.delta.DeltaLayer` bound to the module that produced the base output (the
shared or the base task's own weight, whichever the policy gives the base).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from automtl.delta import DeltaLayer, WeightDelta, delta_layer
from automtl.supernet._plan import Program


def bind_delta_steps(program: Program, modules: Sequence[nn.Module]) -> list[nn.Module]:
    """``modules`` with every delta step's :class:`WeightDelta` bound to its base layer."""
    producer = {s.out: m for s, m in zip(program.steps, modules)}
    out: list[nn.Module] = []
    for step, module in zip(program.steps, modules):
        if step.ref[0] == "delta":
            assert isinstance(module, WeightDelta)
            out.append(delta_layer(producer[step.inputs[2]], module))
        else:
            out.append(module)
    return out


def adopt_layout(units: nn.ModuleDict, state: Mapping[str, Any], prefix: str = "units.") -> None:
    """Switch each weight delta to the layout (sparse or dense) that ``state`` saved for it."""
    for key, unit in units.items():
        deltas = getattr(unit, "delta", None)
        if deltas is None:
            continue
        for task, d in deltas.items():
            d.adopt(state, f"{prefix}{key}.delta.{task}.")


def deploy_copy(module: nn.Module, memo: dict[int, Any], *, sparse: bool) -> nn.Module:
    """A deployable copy of a program module: a delta layer keeps only its non-zero ΔW entries
    (sparse storage) and runs the sparse kernels when ``sparse``; the rest is deep-copied.
    ``memo`` is shared by all copies, so a delta layer's base is the copied base layer."""
    import copy

    import torch

    clone = copy.deepcopy(module, memo)
    if isinstance(clone, DeltaLayer):
        d = clone.delta
        if d.mode != "support":
            with torch.no_grad():
                d.set_support(d.effective(deterministic=True).reshape(-1).nonzero().squeeze(1))
        clone._cache = {}
        clone.sparse = sparse
        d.track_activations = False
    return clone
