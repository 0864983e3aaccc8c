"""Show a backbone as automtl sees it: layers, output shapes and parameter count.

PATH_OR_NAME is a .prototxt file (stock Caffe or AutoMTL dialect) or ``torchvision:NAME``:
a whole torchvision model (``torchvision:resnet18``) or a named backbone
(``torchvision:deeplab_resnet34``, ``torchvision:mobilenet_v2 --backbone``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

PREFIX = "torchvision:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m automtl inspect``."""
    parser.add_argument("target", metavar="PATH_OR_NAME",
                        help="a .prototxt path, or torchvision:NAME (a torchvision model or a named backbone)")
    parser.add_argument("--json", action="store_true",
                        help='print {"params", "layers", "output_shape", "inputs", "weighted_layers", "nodes"}')
    parser.add_argument("--backbone", action="store_true",
                        help="for torchvision:NAME, import the feature extractor instead of the whole model")
    parser.add_argument("--input-size", type=int, default=224,
                        help="input height/width for torchvision models (default 224; prototxt declares its own)")
    parser.add_argument("--batch", type=int, default=1, help="batch size for torchvision models (default 1)")


def load_target(target: str, *, backbone: bool = False, input_size: int = 224, batch: int = 1) -> Any:
    """The :class:`~automtl.graph.Graph` of a prototxt path or ``torchvision:NAME``."""
    import torch

    from automtl.backbones import ZOO as BACKBONES
    from automtl.backbones import torchvision_model
    from automtl.graph import from_module, load_prototxt

    if target.startswith(PREFIX):
        import torchvision

        name = target[len(PREFIX):]
        full = not backbone and name in torchvision.models.list_models()
        if not full and name not in BACKBONES:
            from automtl.errors import UnsupportedLayerError

            raise UnsupportedLayerError(f"'{name}' is neither a torchvision model nor a named backbone "
                                        f"({', '.join(BACKBONES)})")
        model = torchvision_model(name, full=full).eval()
        return from_module(model, torch.zeros(batch, 3, input_size, input_size), name=name)
    if not os.path.exists(target):
        from automtl.errors import GraphError

        raise GraphError(f"no such file (use {PREFIX}NAME for a torchvision model)", path=target)
    return load_prototxt(target)


def summary(graph: Any) -> dict[str, Any]:
    """The JSON-able description ``--json`` prints."""
    from automtl.graph import node_param_count

    out = graph.output_shape
    return {
        "name": graph.name,
        "params": graph.param_count(),
        "layers": sum(1 for n in graph if n.op != "input"),
        "weighted_layers": len(graph.weighted_nodes()),
        "inputs": {n: list(graph[n].shape or ()) for n in graph.inputs},
        "output_shape": list(out) if isinstance(out, tuple) else [list(s) if s else None for s in out or []],
        "outputs": list(graph.outputs),
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs),
                   "shape": list(n.shape) if n.shape else None, "params": node_param_count(n),
                   "source": n.source} for n in graph],
    }


def render(info: dict[str, Any]) -> str:
    """The human-readable table: one line per node, then the totals."""
    rows = [("name", "op", "output shape", "params")]
    for n in info["nodes"]:
        shape = "x".join(str(s) for s in n["shape"]) if n["shape"] else "?"
        rows.append((n["name"], n["op"], shape, f"{n['params']:,}" if n["params"] else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}" for r in rows]
    lines.append("")
    lines.append(f"{info['name']}: {info['layers']} layers ({info['weighted_layers']} weighted), "
                 f"{info['params']:,} parameters, output {info['output_shape']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the graph of ``args.target``; 2 on a typed error (message on stderr)."""
    from automtl.errors import AutoMTLError

    try:
        graph = load_target(args.target, backbone=args.backbone, input_size=args.input_size, batch=args.batch)
    except AutoMTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = summary(graph)
    print(json.dumps(info, indent=2) if args.json else render(info))
    return 0
