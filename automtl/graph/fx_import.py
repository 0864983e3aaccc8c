"""Import any torch.fx-traceable ``nn.Module`` into the graph IR (``from_module``).

Parametric leaf modules (convolutions, linear layers, norms) become typed nodes that can
later carry task policies; simple parameter-free modules map to IR ops; everything else
(functional calls, methods, unknown modules) is kept as shared computation (``function`` /
``module`` nodes). Each node's ``source`` is the fx module path it came from, so weights can
be copied back with :func:`copy_weights`.
"""
from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
import torch.fx as fx
from torch import nn

from automtl.errors import TraceError
from automtl.graph.ir import Graph, Node
from automtl.graph.layers import FunctionCall, Ref

# Leaf modules the tracer must not enter: their forward reads ``self.training`` (which fx
# would freeze into a constant) or is not traceable.
_EXTRA_LEAVES: tuple[type, ...] = ()
try:  # torchvision is a dependency, but keep the importer usable without it.
    from torchvision.ops import StochasticDepth as _StochasticDepth

    _EXTRA_LEAVES = (_StochasticDepth,)
except ImportError:  # pragma: no cover - torchvision is installed with automtl
    pass


class Constant(nn.Module):
    """A tensor read with ``get_attr`` (a parameter or buffer of the imported model)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        if isinstance(value, nn.Parameter):
            self.value = nn.Parameter(value.detach().clone(), requires_grad=value.requires_grad)
        else:
            self.register_buffer("value", value.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.value


class _Tracer(fx.Tracer):
    """fx tracer that keeps ``_EXTRA_LEAVES`` (and user-given types) as leaf modules."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self._leaves):
            return True
        return super().is_leaf_module(m, module_qualified_name)


# ---- leaf modules → IR ops ---------------------------------------------------------------

def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_attrs(m: nn.Conv2d) -> dict[str, Any] | None:
    if m.padding_mode != "zeros":
        return None
    padding = m.padding if isinstance(m.padding, str) else _pair(m.padding)
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": _pair(m.kernel_size),
            "stride": _pair(m.stride), "padding": padding, "dilation": _pair(m.dilation),
            "groups": m.groups, "bias": m.bias is not None}


def _deconv_attrs(m: nn.ConvTranspose2d) -> dict[str, Any] | None:
    if m.padding_mode != "zeros":
        return None
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": _pair(m.kernel_size),
            "stride": _pair(m.stride), "padding": _pair(m.padding), "dilation": _pair(m.dilation),
            "groups": m.groups, "bias": m.bias is not None, "output_padding": _pair(m.output_padding)}


def _bn_attrs(m: nn.modules.batchnorm._BatchNorm) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats, "dims": 1 if isinstance(m, nn.BatchNorm1d) else 2}


def _pool_attrs(m: nn.Module, max_pool: bool) -> dict[str, Any] | None:
    if max_pool and (m.return_indices or _pair(m.dilation) != (1, 1)):
        return None
    if not max_pool and m.divisor_override is not None:
        return None
    stride = m.stride if m.stride is not None else m.kernel_size
    a = {"kernel_size": _pair(m.kernel_size), "stride": _pair(stride), "padding": _pair(m.padding),
         "ceil_mode": bool(m.ceil_mode)}
    if not max_pool:
        a["count_include_pad"] = bool(m.count_include_pad)
    return a


def _adaptive_attrs(m: nn.AdaptiveAvgPool2d) -> dict[str, Any]:
    size = m.output_size
    return {"output_size": size if isinstance(size, int) or size is None else tuple(size)}


# (module type, op, attrs(module) -> dict | None); None means "keep as module". Order matters:
# the first isinstance match wins, and exact subclasses are checked with ``type(m) is``.
_MODULE_OPS: list[tuple[type, str, Callable[[Any], dict[str, Any] | None]]] = [
    (nn.Conv2d, "conv", _conv_attrs),
    (nn.ConvTranspose2d, "deconv", _deconv_attrs),
    (nn.Linear, "linear", lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                     "bias": m.bias is not None}),
    (nn.BatchNorm2d, "batch_norm", _bn_attrs),
    (nn.BatchNorm1d, "batch_norm", _bn_attrs),
    (nn.LayerNorm, "layer_norm", lambda m: {"normalized_shape": tuple(m.normalized_shape), "eps": m.eps,
                                            "elementwise_affine": m.elementwise_affine,
                                            "bias": m.bias is not None or not m.elementwise_affine}),
    (nn.GroupNorm, "group_norm", lambda m: {"num_groups": m.num_groups, "num_channels": m.num_channels,
                                            "eps": m.eps, "affine": m.affine}),
    (nn.PReLU, "prelu", lambda m: {"num_parameters": m.num_parameters}),
    (nn.ReLU, "relu", lambda m: {}),
    (nn.ReLU6, "relu6", lambda m: {}),
    (nn.LeakyReLU, "leaky_relu", lambda m: {"negative_slope": m.negative_slope}),
    (nn.Sigmoid, "sigmoid", lambda m: {}),
    (nn.Tanh, "tanh", lambda m: {}),
    (nn.GELU, "gelu", lambda m: {"approximate": m.approximate}),
    (nn.SiLU, "silu", lambda m: {}),
    (nn.Hardswish, "hardswish", lambda m: {}),
    (nn.Hardsigmoid, "hardsigmoid", lambda m: {}),
    (nn.MaxPool2d, "max_pool", lambda m: _pool_attrs(m, True)),
    (nn.AvgPool2d, "avg_pool", lambda m: _pool_attrs(m, False)),
    (nn.AdaptiveAvgPool2d, "adaptive_avg_pool", _adaptive_attrs),
    (nn.Dropout, "dropout", lambda m: {"p": m.p}),
    (nn.Flatten, "flatten", lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim}),
    (nn.Identity, "identity", lambda m: {}),
    (nn.Softmax, "softmax", lambda m: {"dim": m.dim} if m.dim is not None else None),
]


def module_op(m: nn.Module) -> tuple[str, dict[str, Any]]:
    """The IR op and attributes for a leaf module (``module`` with a copy when none fits)."""
    for cls, op, attrs_of in _MODULE_OPS:
        if type(m) is cls:
            attrs = attrs_of(m)
            if attrs is not None:
                return op, attrs
            break
    return "module", {"module": copy.deepcopy(m)}


# ---- functions → IR ops ------------------------------------------------------------------

_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_CAT = {torch.cat, torch.concat}


def _clean_function(n: fx.Node) -> tuple[str, dict[str, Any], list[fx.Node]] | None:
    """Map a call_function/call_method to add/mul/concat/flatten when it fits exactly."""
    args, kwargs = n.args, n.kwargs
    is_method = n.op == "call_method"
    if n.op == "call_function" and (n.target in _ADD or n.target in _MUL):
        operands = [a for a in args if isinstance(a, fx.Node)]
        if len(args) == 2 and not kwargs and len(operands) == 2:
            return ("add" if n.target in _ADD else "mul"), {}, operands
        return None
    if n.op == "call_function" and n.target in _CAT:
        tensors = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        extra = set(kwargs) - {"tensors", "dim"}
        if isinstance(tensors, (list, tuple)) and tensors and not extra and isinstance(dim, int) \
                and all(isinstance(t, fx.Node) for t in tensors):
            return "concat", {"dim": dim}, list(tensors)
        return None
    if n.op == "call_function" and n.target is torch.nn.functional.adaptive_avg_pool2d:
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        if args and isinstance(args[0], fx.Node) and not set(kwargs) - {"output_size"} and (
                isinstance(size, int) or (isinstance(size, (tuple, list)) and all(isinstance(v, int) for v in size))):
            return "adaptive_avg_pool", {"output_size": size if isinstance(size, int) else tuple(size)}, [args[0]]
        return None
    if (n.op == "call_function" and n.target is torch.flatten) or (is_method and n.target == "flatten"):
        if not args or not isinstance(args[0], fx.Node) or set(kwargs) - {"start_dim", "end_dim"}:
            return None
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        if isinstance(start, int) and isinstance(end, int):
            return "flatten", {"start_dim": start, "end_dim": end}, [args[0]]
    return None


def _to_refs(value: Any, refs: dict[fx.Node, int], order: list[fx.Node]) -> Any:
    """Replace fx Nodes inside args/kwargs by :class:`Ref` placeholders (numbered by first use)."""
    if isinstance(value, fx.Node):
        if value not in refs:
            refs[value] = len(order)
            order.append(value)
        return Ref(refs[value])
    if isinstance(value, tuple):
        return tuple(_to_refs(v, refs, order) for v in value)
    if isinstance(value, list):
        return [_to_refs(v, refs, order) for v in value]
    if isinstance(value, dict):
        return {k: _to_refs(v, refs, order) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_to_refs(value.start, refs, order), _to_refs(value.stop, refs, order),
                     _to_refs(value.step, refs, order))
    return value


def _function_base(n: fx.Node) -> str:
    base = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", n.name)
    return re.sub(r"[^0-9A-Za-z_]", "_", str(base)).strip("_") or "fn"


def _scope(n: fx.Node) -> str:
    stack = n.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1]
    return path[0] if isinstance(path, tuple) else str(path)


# ---- tracing and conversion ----------------------------------------------------------------

def trace(module: nn.Module, *, leaf_modules: Iterable[type] = ()) -> fx.GraphModule:
    """Symbolically trace ``module`` (raising :class:`TraceError` naming the model when fx cannot)."""
    tracer = _Tracer(_EXTRA_LEAVES + tuple(leaf_modules))
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, RuntimeError...)
        raise TraceError(f"torch.fx cannot trace {type(module).__name__}: {str(exc).splitlines()[0]}",
                         layer=type(module).__name__) from exc
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _propagate_shapes(gm: fx.GraphModule, inputs: tuple[Any, ...]) -> dict[str, tuple[int, ...] | None]:
    """Run the traced model once (eval mode, no grad) and record each node's output shape."""
    shapes: dict[str, tuple[int, ...] | None] = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            shapes[n.name] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            return out

    modes = [(m, m.training) for m in gm.modules()]  # restore each module's own mode after
    gm.eval()
    try:
        with torch.no_grad():
            _Recorder(gm).run(*inputs)
    except Exception as exc:
        raise TraceError(f"{type(gm).__name__} fails on the example input: {str(exc).splitlines()[0]}") from exc
    finally:
        for m, mode in modes:
            m.training = mode
    return shapes


def from_module(module: nn.Module, example_input: Any = None, *, name: str | None = None,
                leaf_modules: Iterable[type] = (), input_names: Iterable[str] | None = None) -> Graph:
    """Import a torch.fx-traceable ``module`` as a :class:`Graph` (shapes from ``example_input``).

    ``example_input`` is a tensor (or a tuple of tensors for several inputs); without it the
    graph has no shapes. Node names are readable: a module's qualified name
    (``layer1.0.conv1``; a module called twice gets ``_1``), or ``scope.function``
    (``layer1.0.add``); inputs keep the argument names of ``forward`` unless ``input_names``
    gives others. Weights are not copied here: see :func:`copy_weights`.

    Example::

        g = from_module(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
        net = g.to_module(); copy_weights(model, net)
    """
    gm = trace(module, leaf_modules=leaf_modules)
    inputs: tuple[Any, ...] = ()
    if example_input is not None:
        inputs = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    shapes = _propagate_shapes(gm, inputs) if inputs else {}

    taken = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    wanted_inputs = list(input_names) if input_names is not None else []
    used: set[str] = set()

    def unique(base: str, owner: bool = False) -> str:
        """``base`` or ``base_N``; only the module/attribute called ``base`` (``owner``) gets it bare."""
        cand, i = base, 0
        while cand in used or (cand in taken and not (owner and cand == base)):
            i += 1
            cand = f"{base}_{i}"
        used.add(cand)
        return cand

    graph = Graph(name=name or type(module).__name__)
    names: dict[fx.Node, str] = {}
    placeholder_index = 0
    outputs: list[str] = []
    for n in gm.graph.nodes:
        shape = shapes.get(n.name)
        if n.op == "placeholder":
            attrs: dict[str, Any] = {}
            if placeholder_index < len(inputs) and isinstance(inputs[placeholder_index], torch.Tensor):
                attrs["shape"] = tuple(inputs[placeholder_index].shape)
            names[n] = unique(wanted_inputs[placeholder_index] if placeholder_index < len(wanted_inputs)
                              else n.name)
            placeholder_index += 1
            graph.add(Node(names[n], "input", (), attrs, shape, None))
        elif n.op == "call_module":
            op, attrs = module_op(gm.get_submodule(n.target))
            args = [a for a in n.args]
            if n.kwargs or not all(isinstance(a, fx.Node) for a in args):
                fn_node = _function_node(n, gm.get_submodule(n.target), names, unique(n.target, owner=True),
                                         shape, n.target)
                fn_node.attrs["module_target"] = n.target
                graph.add(fn_node)
                names[n] = fn_node.name
                continue
            names[n] = unique(n.target, owner=True)
            graph.add(Node(names[n], op, tuple(names[a] for a in args), attrs, shape, n.target))
        elif n.op == "get_attr":
            value = _get_attr(gm, n.target)
            names[n] = unique(n.target, owner=True)
            if isinstance(value, torch.Tensor):
                graph.add(Node(names[n], "module", (), {"module": Constant(value)}, shape, n.target))
            else:
                graph.add(Node(names[n], "function", (), {"target": _const, "kind": "call_function",
                                                          "args": (value,), "kwargs": {}}, shape, n.target))
        elif n.op in ("call_function", "call_method"):
            scope = _scope(n)
            base = f"{scope}.{_function_base(n)}" if scope else _function_base(n)
            clean = _clean_function(n)
            if clean is not None:
                op, attrs, srcs = clean
                names[n] = unique(base)
                graph.add(Node(names[n], op, tuple(names[s] for s in srcs), attrs, shape, scope or None))
            else:
                node = _function_node(n, None, names, unique(base), shape, scope or None)
                names[n] = node.name
                graph.add(node)
        elif n.op == "output":
            outputs = _output_names(n.args[0], names)
    graph.outputs = outputs
    return graph


def _const(value: Any) -> Any:
    """Returns a non-tensor attribute read with ``get_attr``."""
    return value


def _get_attr(module: nn.Module, target: str) -> Any:
    obj: Any = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _function_node(n: fx.Node, module: nn.Module | None, names: dict[fx.Node, str], name: str,
                   shape: tuple[int, ...] | None, source: str | None) -> Node:
    refs: dict[fx.Node, int] = {}
    order: list[fx.Node] = []
    args = _to_refs(tuple(n.args), refs, order)
    kwargs = _to_refs(dict(n.kwargs), refs, order)
    if module is not None:  # a module called with keyword or constant arguments
        target: Any = copy.deepcopy(module)
        kind = "call_function"
    else:
        target, kind = n.target, n.op
    return Node(name, "function", tuple(names[s] for s in order),
                {"target": target, "kind": kind, "args": args, "kwargs": kwargs}, shape, source)


def _output_names(value: Any, names: dict[fx.Node, str]) -> list[str]:
    if isinstance(value, fx.Node):
        return [names[value]]
    if isinstance(value, (tuple, list)):
        out: list[str] = []
        for v in value:
            out += _output_names(v, names)
        return out
    if isinstance(value, dict):
        out = []
        for v in value.values():
            out += _output_names(v, names)
        return out
    raise TraceError(f"model output of type {type(value).__name__} is not a tensor or a tuple of tensors")


# ---- weights -------------------------------------------------------------------------------

def copy_weights(src: nn.Module, dst: nn.Module, *, by: str = "source") -> int:
    """Copy parameters and buffers from the imported ``src`` into a graph's module ``dst``.

    Each node whose ``source`` (``by="source"``, graphs from :func:`from_module`) or ``name``
    (``by="name"``, e.g. a shipped prototxt exported from ``src``) names a submodule (or
    attribute) of ``src`` receives its state; returns the number of tensors copied. Raises
    :class:`~automtl.errors.GraphError` when a node's key is missing or its shapes differ.
    """
    from automtl.errors import GraphError
    from automtl.graph.module import GraphModule

    if not isinstance(dst, GraphModule):
        raise TypeError(f"copy_weights needs a GraphModule as destination, got {type(dst).__name__}")
    if by not in ("source", "name"):
        raise ValueError(f"by must be 'source' or 'name', not {by!r}")
    copied = 0
    with torch.no_grad():
        for node in dst.graph:
            key = node.source if by == "source" else node.name
            if node.op == "input" or not key:
                continue
            if node.op == "function" and "module_target" not in node.attrs:
                continue
            layer = dst.layer(node.name)
            state = layer.state_dict()
            if not state and node.op != "module":
                continue
            try:
                value = _get_attr(src, key)
            except AttributeError:
                if not state:
                    continue
                raise GraphError(f"{by} '{key}' is not in {type(src).__name__}", layer=node.name) from None
            if isinstance(layer, Constant):
                if not isinstance(value, torch.Tensor) or value.shape != layer.value.shape:
                    raise GraphError(f"'{key}' does not fit the constant's shape", layer=node.name)
                layer.value.copy_(value)
                copied += 1
                continue
            if node.op == "function":  # a module kept as a call: FunctionCall(target=the module)
                layer = cast(FunctionCall, layer).target
            if not isinstance(value, nn.Module):
                continue
            try:
                layer.load_state_dict(value.state_dict())
            except RuntimeError as exc:
                raise GraphError(f"weights of '{key}' do not fit: {str(exc).splitlines()[0]}",
                                 layer=node.name) from exc
            copied += len(value.state_dict())
    return copied
