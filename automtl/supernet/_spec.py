"""Structure of a supernet: which graph nodes become policy layers, and how each one can skip.

Pure analysis of a :class:`~automtl.graph.Graph` (no modules): every weighted node (conv,
deconv, linear) with the norm that directly follows it becomes a *unit*; the unit's skip is the
identity when its input and output shapes agree, else a 1×1 projection when one reproduces the
output shape, else skip is not allowed there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from automtl.errors import ModelError
from automtl.graph.ir import NORM_OPS, Graph, Node

# A reference to one module of the supernet: (kind, node name, owner task or "").
UnitKey = tuple[str, str, str]


@dataclass(frozen=True)
class UnitSpec:
    """One policy layer: weighted node ``name`` (+ attached ``norm``) reading ``input``."""

    index: int
    name: str
    op: str
    input: str
    out: str
    norm: str | None
    norm_op: str | None
    norm_per_task: bool
    proj: str | None  # None = identity skip; else "conv" | "deconv" | "linear"
    proj_attrs: dict[str, Any] = field(default_factory=dict)
    proj_norm_per_task: bool = False
    skip_ok: bool = True

    @property
    def proj_has_norm(self) -> bool:
        return self.proj in ("conv", "deconv")


@dataclass(frozen=True)
class Item:
    """One step of the backbone walk: an input, a unit, a per-task norm, or a shared op."""

    kind: str  # "input" | "unit" | "tnorm" | "op"
    name: str
    inputs: tuple[str, ...]
    unit: UnitSpec | None = None


@dataclass
class BackboneSpec:
    """The walk over a backbone graph that every executor of the supernet follows."""

    items: list[Item]
    units: list[UnitSpec]
    outputs: list[str]
    input: str

    @property
    def layer_names(self) -> list[str]:
        return [u.name for u in self.units]


def _spatial_conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def _projection(node: Node, in_shape: tuple[int, ...] | None,
                out_shape: tuple[int, ...] | None) -> tuple[str | None, dict[str, Any], bool]:
    """(projection kind, its attrs, skip allowed) for a weighted node."""
    if in_shape is None or out_shape is None:
        return None, {}, False
    if tuple(in_shape) == tuple(out_shape):
        return None, {}, True
    a = node.attrs
    if node.op == "linear":
        if in_shape[:-1] == out_shape[:-1]:
            return "linear", {"in_features": in_shape[-1], "out_features": out_shape[-1], "bias": True}, True
        return None, {}, False
    if len(in_shape) != 4 or len(out_shape) != 4 or in_shape[0] != out_shape[0]:
        return None, {}, False
    stride = tuple(int(s) for s in a.get("stride", (1, 1)))
    base = {"in_channels": in_shape[1], "out_channels": out_shape[1], "kernel_size": (1, 1), "stride": stride,
            "padding": (0, 0), "dilation": (1, 1), "groups": 1, "bias": False}
    if node.op == "conv":
        ok = all(_spatial_conv_out(in_shape[2 + i], stride[i]) == out_shape[2 + i] for i in range(2))
        return ("conv", base, True) if ok else (None, {}, False)
    if node.op == "deconv":
        pads = [out_shape[2 + i] - ((in_shape[2 + i] - 1) * stride[i] + 1) for i in range(2)]
        if all(0 <= p < max(stride[i], 1) for i, p in enumerate(pads)):
            return "deconv", {**base, "output_padding": tuple(pads)}, True
        return None, {}, False
    return None, {}, False


def analyse(graph: Graph, *, bn_per_task: bool) -> BackboneSpec:
    """Split ``graph`` into units and shared ops (see the module docstring)."""
    inputs = graph.inputs
    if len(inputs) != 1:
        raise ModelError(f"a multi-task backbone needs exactly one input, graph '{graph.name}' has {inputs}")
    if not graph.outputs:
        raise ModelError(f"graph '{graph.name}' declares no output")
    users = graph.consumers()
    outputs = set(graph.outputs)
    attached: dict[str, str] = {}  # weighted node -> its norm
    for node in graph:
        if node.op in NORM_OPS and len(node.inputs) == 1:
            prod = graph[node.inputs[0]]
            if prod.is_weighted and users[prod.name] == [node.name] and prod.name not in outputs:
                attached[prod.name] = node.name
    norms = set(attached.values())
    items: list[Item] = []
    units: list[UnitSpec] = []
    for node in graph:
        if node.op == "input":
            items.append(Item("input", node.name, ()))
        elif node.is_weighted:
            if len(node.inputs) != 1:
                raise ModelError(f"weighted layer '{node.name}' reads {len(node.inputs)} inputs; expected 1")
            norm = attached.get(node.name)
            norm_op = graph[norm].op if norm else None
            proj, proj_attrs, skip_ok = _projection(node, graph[node.inputs[0]].shape, node.shape)
            unit = UnitSpec(
                index=len(units), name=node.name, op=node.op, input=node.inputs[0], out=norm or node.name,
                norm=norm, norm_op=norm_op, norm_per_task=bn_per_task and norm_op == "batch_norm",
                proj=proj, proj_attrs=proj_attrs, proj_norm_per_task=bn_per_task, skip_ok=skip_ok,
            )
            units.append(unit)
            items.append(Item("unit", node.name, tuple(node.inputs), unit))
        elif node.name in norms:
            continue
        elif node.op == "batch_norm" and bn_per_task:
            items.append(Item("tnorm", node.name, tuple(node.inputs)))
        else:
            items.append(Item("op", node.name, tuple(node.inputs)))
    if not units:
        raise ModelError(f"graph '{graph.name}' has no weighted layer (conv, deconv, linear) to carry a policy")
    return BackboneSpec(items=items, units=units, outputs=list(graph.outputs), input=inputs[0])
