"""The graph IR: one small, printable, executable description of a backbone.

Every importer (prototxt, torch.fx) produces a :class:`Graph`; every consumer (the supernet,
the exporters, ``inspect``) reads one. Nodes are kept in topological order.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automtl.errors import GraphCycleError, UnknownBlobError

if TYPE_CHECKING:  # imported lazily at run time: module.py builds on this file
    from automtl.graph.module import GraphModule

# Ops whose weights can carry a per-task policy (share / specialize / skip).
WEIGHTED_OPS = frozenset({"conv", "deconv", "linear"})
# Normalisation ops: they follow the weighted layer in front of them (per-task BN).
NORM_OPS = frozenset({"batch_norm", "layer_norm", "group_norm"})
# Ops that own parameters at all (weighted, norms, and small parametric ones).
PARAMETRIC_OPS = WEIGHTED_OPS | NORM_OPS | frozenset({"scale", "prelu"})


@dataclass
class Node:
    """One operation: ``name`` computes ``op(*inputs)`` with ``attrs``; ``shape`` is its output.

    ``source`` says where the node came from (``file.prototxt:LINE`` or an fx module path)
    so errors and reports can point back at it.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    source: str | None = None

    @property
    def is_weighted(self) -> bool:
        return self.op in WEIGHTED_OPS

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (
            self.name == other.name
            and self.op == other.op
            and tuple(self.inputs) == tuple(other.inputs)
            and _attrs_key(self.attrs) == _attrs_key(other.attrs)
            and self.shape == other.shape
        )


def _attrs_key(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes compared by value; live objects (modules, callables) compared by identity."""
    return {k: (v if isinstance(v, (int, float, str, bool, tuple, list, type(None))) else id(v))
            for k, v in attrs.items()}


class Graph:
    """A directed acyclic graph of :class:`Node` in topological order.

    ``inputs`` are the names of ``input`` nodes, ``outputs`` the names of nodes whose values
    the network returns (one output: a tensor; several: a tuple).
    """

    def __init__(self, nodes: Iterable[Node] = (), outputs: Iterable[str] = (), name: str = "graph") -> None:
        self.name = name
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            self.add(node)
        self.outputs: list[str] = list(outputs)

    # ---- construction -------------------------------------------------------------------
    def add(self, node: Node) -> Node:
        """Append a node; its inputs must already be in the graph (keeps topological order)."""
        if node.name in self._nodes:
            raise ValueError(f"duplicate node name '{node.name}'")
        for src in node.inputs:
            if src not in self._nodes:
                raise UnknownBlobError(f"input '{src}' is produced by no earlier node", layer=node.name)
        self._nodes[node.name] = node
        return node

    @classmethod
    def from_unordered(cls, nodes: Iterable[Node], outputs: Iterable[str], name: str = "graph") -> Graph:
        """Build a graph from nodes in any order, sorting them topologically (cycles raise)."""
        pending = {n.name: n for n in nodes}
        graph = cls(name=name)
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(node_name: str, via: str) -> None:
            if state.get(node_name) == 2:
                return
            if state.get(node_name) == 1:
                raise GraphCycleError(f"cycle through '{node_name}'", layer=via)
            if node_name not in pending:
                raise UnknownBlobError(f"input '{node_name}' is produced by no node", layer=via)
            state[node_name] = 1
            node = pending[node_name]
            for src in node.inputs:
                visit(src, node.name)
            state[node_name] = 2
            graph.add(node)

        for n in list(pending):
            visit(n, n)
        graph.outputs = list(outputs)
        return graph

    # ---- access ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __getitem__(self, name: str) -> Node:
        return self._nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @property
    def inputs(self) -> list[str]:
        return [n.name for n in self if n.op == "input"]

    def weighted_nodes(self) -> list[Node]:
        """Nodes that can carry a task policy, in execution order."""
        return [n for n in self if n.is_weighted]

    def consumers(self) -> dict[str, list[str]]:
        """Map each node to the nodes that read it."""
        users: dict[str, list[str]] = {n.name: [] for n in self}
        for n in self:
            for src in n.inputs:
                users[src].append(n.name)
        return users

    def param_count(self) -> int:
        """Parameters of the executable network (analytic, from the attributes)."""
        from automtl.graph.layers import node_param_count

        return sum(node_param_count(n) for n in self)

    @property
    def output_shape(self) -> tuple[int, ...] | list[tuple[int, ...] | None] | None:
        shapes = [self[o].shape for o in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def copy(self) -> Graph:
        g = Graph(name=self.name)
        for n in self:
            g.add(Node(n.name, n.op, tuple(n.inputs), copy.copy(n.attrs), n.shape, n.source))
        g.outputs = list(self.outputs)
        return g

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return self.nodes == other.nodes and self.outputs == other.outputs

    # ---- execution ------------------------------------------------------------------------
    def to_module(self, *, max_bytes: int | None = None) -> GraphModule:
        """Build the executable network (fresh weights; see ``GraphModule.load_from``).

        Refuses (:class:`~automtl.errors.ModelTooLargeError`, before allocating) a network whose
        float32 parameters and activations exceed ``max_bytes`` (default: ``$AUTOMTL_MAX_MODEL_BYTES``,
        else half of the available memory; see :mod:`automtl.graph.limits`).
        """
        from automtl.graph.limits import check_model_size
        from automtl.graph.module import GraphModule

        check_model_size(self, max_bytes=max_bytes)
        return GraphModule(self)

    def infer_shapes(self) -> Graph:
        """Fill every node's ``shape`` by running the network on zeros (meta-free, cheap)."""
        from automtl.graph.module import infer_shapes

        infer_shapes(self)
        return self

    # ---- printing -------------------------------------------------------------------------
    def __str__(self) -> str:
        rows = [("name", "op", "inputs", "shape")]
        for n in self:
            shape = "x".join(str(s) for s in n.shape) if n.shape else "?"
            rows.append((n.name, n.op, ",".join(n.inputs), shape))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
        lines.append(f"outputs: {', '.join(self.outputs)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Graph(name={self.name!r}, nodes={len(self)}, outputs={self.outputs})"
