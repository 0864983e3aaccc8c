"""Executing a :class:`~automtl.graph.ir.Graph`: ``GraphModule`` and shape inference."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from automtl.errors import MissingInputShapeError, ShapeError
from automtl.graph.layers import build_layer

if TYPE_CHECKING:
    from automtl.graph.ir import Graph, Node


def module_key(name: str) -> str:
    """A ModuleDict-safe key for a node name (dots are not allowed in module names)."""
    return name.replace(".", "__")


class GraphModule(nn.Module):
    """Runs a graph node by node; one submodule per node, keyed by :func:`module_key`.

    ``forward`` takes the graph inputs in declaration order and returns the output tensor
    (or a tuple when the graph has several outputs).
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.layers = nn.ModuleDict()
        for node in graph:
            if node.op != "input":
                self.layers[module_key(node.name)] = build_layer(node)
        self._plan = [(n.name, n.op, module_key(n.name), tuple(n.inputs)) for n in graph]
        self._input_names = graph.inputs
        self._outputs = list(graph.outputs)

    def layer(self, name: str) -> nn.Module:
        """The module of node ``name``."""
        return self.layers[module_key(name)]

    def load_from(self, module: nn.Module) -> GraphModule:
        """Copy the weights of the ``nn.Module`` this graph was imported from (see ``from_module``)."""
        from automtl.graph.fx_import import copy_weights

        copy_weights(module, self)
        return self

    def forward(self, *inputs: torch.Tensor) -> Any:
        env: dict[str, Any] = dict(zip(self._input_names, inputs))
        for name, op, key, srcs in self._plan:
            if op == "input":
                continue
            env[name] = self.layers[key](*[env[s] for s in srcs])
        outs = tuple(env[o] for o in self._outputs)
        return outs[0] if len(outs) == 1 else outs


def split_source(source: str | None) -> tuple[str | None, int | None]:
    """Split a node's ``source`` (``path:line`` or a module path) into path and line."""
    if not source:
        return None, None
    head, _, tail = source.rpartition(":")
    if head and tail.isdigit():
        return head, int(tail)
    return source, None


def run_checked(node: Node, layer: nn.Module, args: list[Any], path: str | None = None) -> Any:
    """Run one node and turn a shape failure into a :class:`ShapeError` naming the layer."""
    try:
        return layer(*args)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
        src_path, src_line = split_source(node.source)
        raise ShapeError(
            f"{node.op} cannot take inputs of shapes {shapes}: {str(exc).splitlines()[0]}",
            path=src_path or path,
            line=src_line,
            layer=node.name,
        ) from exc


def infer_shapes(graph: Graph) -> None:
    """Fill ``node.shape`` for every node by running the graph on tensors of the input shapes.

    Uses the ``meta`` device (no memory, no compute) and falls back to real zeros for ops
    that have no meta kernel.
    """
    for name in graph.inputs:
        if not graph[name].attrs.get("shape"):
            raise MissingInputShapeError("input has no shape; declare input_dim / input_shape / Input",
                                         layer=name)
    try:
        _infer(graph, torch.device("meta"))
    except ShapeError:
        raise
    except (NotImplementedError, RuntimeError):
        _infer(graph, torch.device("cpu"))


def _infer(graph: Graph, device: torch.device) -> None:
    env: dict[str, Any] = {}
    with torch.no_grad():
        for node in graph:
            if node.op == "input":
                shape = tuple(int(s) for s in node.attrs["shape"])
                env[node.name] = torch.zeros(shape, device=device)
                node.shape = shape
                continue
            with torch.device(device):
                layer = build_layer(node)
            layer.eval()
            out = run_checked(node, layer, [env[s] for s in node.inputs])
            env[node.name] = out
            node.shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
