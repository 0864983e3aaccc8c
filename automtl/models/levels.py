"""Multi-level features of a CNN backbone: find the ends of its stages (the last layer at each
spatial size) and make the backbone return the chosen ones, for decoders such as MLoRE that
read several levels.

Example:
    >>> net, names, channels = tap_levels(TinyResNet((8, 16, 32)), (1, 3, 32, 32), levels=(0, -1))
    >>> names, channels
    (['layers_0_relu_1', 'layers_2_relu_1'], [8, 32])
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn

from automtl.errors import ConfigError
from automtl.graph import Graph

__all__ = ["DEFAULT_LEVELS", "pick_levels", "stage_ends", "tap_graph_levels", "tap_levels"]

#: levels used when a config names none: the last four stages (MLoRE reads four levels)
DEFAULT_LEVELS = 4


def stage_ends(items: Iterable[tuple[str, Sequence[int] | None]]) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of the last 4-D output at each spatial size, in the order the sizes
    first appear (``items``: ``(name, shape)`` in execution order)."""
    last: dict[tuple[int, int], tuple[str, tuple[int, ...]]] = {}
    for name, shape in items:
        if shape is not None and len(shape) == 4:
            last[(int(shape[2]), int(shape[3]))] = (name, tuple(int(s) for s in shape))
    return list(last.values())


def pick_levels(available: Sequence[Any], levels: Sequence[int] | None, *, what: str,
                key: str = "model.levels") -> list[int]:
    """Indices into ``available`` for ``levels`` (negative counts from the end; None: the last
    :data:`DEFAULT_LEVELS`); :class:`ConfigError` naming what exists for one it does not produce."""
    n = len(available)
    if levels is None:
        return list(range(max(0, n - DEFAULT_LEVELS), n))
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
        raise ConfigError("must be a non-empty list of level indices", key=key, value=levels)
    out = []
    for i, lv in enumerate(levels):
        if not isinstance(lv, int) or isinstance(lv, bool):
            raise ConfigError("must be an integer level index", key=f"{key}.{i}", value=lv)
        j = lv + n if lv < 0 else lv
        if not 0 <= j < n:
            raise ConfigError(f"the backbone produces {n} {what}: {list(available)}; a level index "
                              f"must be between {-n} and {n - 1}", key=f"{key}.{i}", value=lv)
        out.append(j)
    if len(set(out)) != len(out):
        raise ConfigError("names a level twice", key=key, value=list(levels))
    return out


def _shape_meta(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def tap_levels(module: nn.Module, input_shape: Sequence[int], levels: Sequence[int] | None
               ) -> tuple[fx.GraphModule, list[str], list[int]]:
    """``module`` traced (torch.fx, sharing its weights) so that it returns the chosen stage ends
    as a tuple; with their node names and channels."""
    from torch.fx.passes.shape_prop import ShapeProp

    from automtl.graph.fx_import import trace

    gm = trace(module)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(tuple(input_shape)))
    finally:
        module.train(was_training)
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    ends = stage_ends((n.name, _shape_meta(n)) for n in nodes)
    by_name = {n.name: n for n in nodes}
    chosen = [ends[j] for j in pick_levels([f"{name} {shape[1:]}" for name, shape in ends], levels,
                                           what="stage ends (name [C, H, W])")]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    output.args = (tuple(by_name[name] for name, _ in chosen),)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    gm.train(was_training)
    return gm, [name for name, _ in chosen], [shape[1] for _, shape in chosen]


def tap_graph_levels(graph: Graph, levels: Sequence[int] | None) -> tuple[Graph, list[int]]:
    """A copy of ``graph`` (shapes inferred) whose outputs are the chosen stage ends, and their channels."""
    g = graph.copy().infer_shapes()
    ends = stage_ends((n.name, n.shape) for n in g if n.op != "input")
    chosen = [ends[j] for j in pick_levels([f"{name} {list(shape[1:])}" for name, shape in ends], levels,
                                           what="stage ends (name [C, H, W])")]
    outputs = [name for name, _ in chosen]
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(g[name].inputs)
    pruned = Graph([n for n in g if n.name in needed], outputs, name=g.name)
    return pruned, [shape[1] for _, shape in chosen]
