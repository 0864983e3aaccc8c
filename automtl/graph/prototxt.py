"""Load a Caffe ``.prototxt`` (stock BVLC Caffe or the AutoMTL dialect) into a :class:`Graph`.

Node names are layer names (an input node is named after its blob); ``node.source`` is
``path:line`` of the layer, so every error and report points at the text to fix.
"""
from __future__ import annotations

import heapq
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import torch
from google.protobuf import text_format

from automtl.errors import (
    GraphCycleError,
    GraphError,
    MissingInputShapeError,
    PrototxtSyntaxError,
    ShapeError,
    UnknownBlobError,
    UnsupportedLayerError,
)
from automtl.graph.caffe_schema import NetParameter
from automtl.graph.ir import Graph, Node
from automtl.graph.layers import build_layer
from automtl.graph.module import run_checked

_META = torch.device("meta")
# Ops whose output has the shape of their (first) input: no need to run them to know it.
_SAME_SHAPE = frozenset({"batch_norm", "scale", "relu", "leaky_relu", "relu6", "prelu", "sigmoid", "tanh", "silu",
                         "dropout", "softmax", "identity", "add", "mul", "max"})


def _f32(x: float) -> float:
    """A float32 protobuf value as the decimal the user wrote (``1e-05``, not ``9.99e-06``)."""
    return float(f"{x:.7g}")


def _finite(x: float, field: str) -> float:
    """:func:`_f32` of a setting that must be a finite number (nan/inf only surface later, as NaN outputs)."""
    value = _f32(x)
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value}")
    return value


# ---- locating layers in the text ------------------------------------------------------------

def top_level_lines(text: str, key: str) -> list[int]:
    """1-based line numbers of each top-level ``key {`` / ``key:`` entry (comments/strings skipped)."""
    return top_level_entries(text).get(key, [])


_SCAN = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|[{}<>\n]|[A-Za-z_]\w*""")


def top_level_entries(text: str) -> dict[str, list[int]]:
    """Line numbers of every top-level field, by field name, in order (one pass over the text)."""
    lines: dict[str, list[int]] = {}
    depth, line = 0, 1
    for m in _SCAN.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == "\n":
            line += 1
        elif c in "{<":
            depth += 1
        elif c in "}>":
            depth -= 1
        elif depth == 0 and (c.isalpha() or c == "_"):
            lines.setdefault(tok, []).append(line)
    return lines


def parse_net(text: str, path: str) -> Any:
    """Parse prototxt text into a ``NetParameter`` (syntax errors name file, line and column)."""
    net = NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as exc:
        line = exc.GetLine() if hasattr(exc, "GetLine") else None
        msg = str(exc)
        detail = msg.split(" : ", 1)[1] if " : " in msg else msg
        if 'no field named "layers"' in detail:
            detail += " (this is the old V1 format; convert it with Caffe's upgrade_net_proto_text first)"
        col = exc.GetColumn() if hasattr(exc, "GetColumn") else None
        raise PrototxtSyntaxError(f"syntax error{f' at column {col}' if col else ''}: {detail}",
                                  path=path, line=line) from None
    except (ValueError, UnicodeError) as exc:  # e.g. bad UTF-8 inside strings
        raise PrototxtSyntaxError(f"syntax error: {exc}", path=path) from None
    return net


# ---- building ---------------------------------------------------------------------------------

@dataclass
class _Layer:
    msg: Any
    index: int
    line: int | None

    @property
    def name(self) -> str:
        return self.msg.name or (self.msg.top[0] if self.msg.top else "") or f"layer{self.index}"


@overload
def _hw(param: Any, field: str, h: str, w: str, default: int) -> tuple[int, int]: ...


@overload
def _hw(param: Any, field: str, h: str, w: str, default: None) -> tuple[int, int] | None: ...


def _hw(param: Any, field: str, h: str, w: str, default: int | None) -> tuple[int, int] | None:
    """Spatial pair from a repeated field (1 or 2 values) or from its ``_h``/``_w`` twins."""
    if param.HasField(h) or param.HasField(w):
        return int(getattr(param, h)), int(getattr(param, w))
    values = list(getattr(param, field))
    if not values:
        return None if default is None else (default, default)
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise ValueError(f"'{field}' has {len(values)} values; 2-D layers take 1 or 2")


SUPPORTED_TYPES = ("BatchNorm", "Concat", "Convolution", "Deconvolution", "Dropout", "Eltwise", "Flatten",
                   "InnerProduct", "Input", "PReLU", "Pooling", "ReLU", "ReLU6", "Scale", "Sigmoid", "Softmax",
                   "Split", "Swish", "TanH")


class _Builder:
    """Turns a parsed ``NetParameter`` into a :class:`Graph`, one layer at a time (shapes on meta)."""

    def __init__(self, net: Any, path: str, text: str) -> None:
        self.net = net
        self.path = path
        entries = top_level_entries(text)
        lines = entries.get("layer", [])
        self.layers = [_Layer(m, i, lines[i] if i < len(lines) else None) for i, m in enumerate(net.layer)]
        self.input_lines = entries.get("input") or entries.get("input_dim") or entries.get("input_shape") or []
        self.graph = Graph(name=net.name or os.path.splitext(os.path.basename(path))[0])
        self.blobs: dict[str, str] = {}  # blob name -> node currently holding it
        self.values: dict[str, torch.Tensor] = {}  # node name -> meta tensor
        self.consumers: dict[str, int] = {}
        self.caffe_bn: set[str] = set()  # stock-Caffe BN nodes a following Scale may fold into
        self.suffix: dict[str, int] = {}  # name -> last suffix tried by unique() (names are never freed)
        self.steps = 0  # inner-loop steps of order() (layers built + edges relaxed): linear in the file
        self.automtl = any(layer.msg.HasField("batch_norm_param") and any(
            layer.msg.batch_norm_param.HasField(f) for f in ("track_running_stats", "momentum", "affine"))
            for layer in self.layers)

    # ---- errors --------------------------------------------------------------------------
    def err(self, cls: type[GraphError], msg: str, layer: _Layer | None) -> GraphError:
        return cls(msg, path=self.path, line=layer.line if layer else None, layer=layer.name if layer else None)

    def source(self, layer: _Layer | None) -> str:
        line = layer.line if layer and layer.line is not None else (self.input_lines[0] if self.input_lines else 1)
        return f"{self.path}:{line}"

    # ---- nodes ---------------------------------------------------------------------------
    def unique(self, name: str) -> str:
        """``name``, or ``name_1``, ``name_2``, … when taken (resumes where the last search stopped)."""
        cand, i = name, self.suffix.get(name, 0)
        while cand in self.graph:
            i += 1
            cand = f"{name}_{i}"
        self.suffix[name] = i
        return cand

    def add(self, layer: _Layer | None, name: str, op: str, inputs: list[str], attrs: dict[str, Any]) -> Node:
        node = Node(self.unique(name), op, tuple(inputs), attrs, None, self.source(layer))
        if op == "input":
            node.shape = tuple(attrs["shape"])
            try:
                self.values[node.name] = torch.empty(node.shape, device=_META)
            except (RuntimeError, ValueError, OverflowError) as exc:
                raise self.err(ShapeError, f"input shape {list(node.shape)} is not usable: {exc}", layer) from None
        elif op in _SAME_SHAPE:  # element-wise: the shape is the input's (attrs are built to fit it)
            out = self.values[inputs[0]]
            if op == "softmax" and not -out.dim() <= attrs["dim"] < out.dim():
                raise self.err(ShapeError, f"softmax axis {attrs['dim']} is outside a {out.dim()}-D bottom", layer)
            node.shape = tuple(out.shape)
            self.values[node.name] = out
        else:
            with torch.device(_META):
                try:
                    module = build_layer(node)
                except (ValueError, TypeError, RuntimeError) as exc:
                    raise self.err(ShapeError, f"invalid {op} settings: {str(exc).splitlines()[0]}", layer) from None
            module.eval()
            out = run_checked(node, module, [self.values[s] for s in inputs], self.path)
            node.shape = tuple(out.shape)
            self.values[node.name] = out
        for s in inputs:
            self.consumers[s] = self.consumers.get(s, 0) + 1
        self.graph.add(node)
        return node

    def shape_of(self, node_name: str) -> tuple[int, ...]:
        return tuple(self.values[node_name].shape)

    # ---- inputs --------------------------------------------------------------------------
    def declare_inputs(self) -> None:
        net = self.net
        names = list(net.input)
        if not names:
            return
        if net.input_shape:
            if len(net.input_shape) != len(names):
                raise self.err(MissingInputShapeError,
                               f"{len(names)} inputs but {len(net.input_shape)} input_shape entries", None)
            shapes = [tuple(int(d) for d in s.dim) for s in net.input_shape]
        elif net.input_dim:
            dims = [int(d) for d in net.input_dim]
            if len(dims) % len(names):
                raise self.err(MissingInputShapeError,
                               f"{len(dims)} input_dim values do not split over {len(names)} inputs", None)
            k = len(dims) // len(names)
            shapes = [tuple(dims[i * k:(i + 1) * k]) for i in range(len(names))]
        else:
            raise MissingInputShapeError(f"input '{names[0]}' has no shape; add input_dim or input_shape",
                                         path=self.path, line=self.input_lines[0] if self.input_lines else None,
                                         layer=names[0])
        for name, shape in zip(names, shapes):
            self.check_shape(shape, name, None)
            self.blobs[name] = self.add(None, name, "input", [], {"shape": shape}).name

    def check_shape(self, shape: tuple[int, ...], name: str, layer: _Layer | None) -> None:
        if not shape or any(d <= 0 for d in shape):
            raise ShapeError(f"input '{name}' has an invalid shape {list(shape)}", path=self.path,
                             line=layer.line if layer else (self.input_lines[0] if self.input_lines else None),
                             layer=name)

    def bind_quirk_input(self, active: list[_Layer]) -> None:
        """AutoMTL files may read ``data`` while declaring ``input: "blob1"``: bind the two."""
        produced = set(self.blobs)
        for layer in active:
            produced.update(layer.msg.top)
        unproduced: dict[str, _Layer] = {}  # first reader of each unproduced blob, in file order
        for layer in active:
            for b in layer.msg.bottom:
                if b not in produced:
                    unproduced.setdefault(b, layer)
        declared = list(self.net.input)
        read = {b for layer in active for b in layer.msg.bottom}
        if len(declared) == 1 and len(unproduced) == 1 and declared[0] not in read:
            blob = next(iter(unproduced))
            warnings.warn(f"{self.path}: input '{declared[0]}' is never read; binding it to the unproduced "
                          f"bottom '{blob}'", stacklevel=3)
            self.blobs[blob] = self.blobs[declared[0]]
        elif unproduced:
            blob, layer = next(iter(unproduced.items()))
            known = ", ".join(sorted(produced)[:8])
            raise self.err(UnknownBlobError, f"bottom '{blob}' is produced by no layer (known blobs: {known}"
                           f"{', …' if len(produced) > 8 else ''})", layer)

    # ---- layers --------------------------------------------------------------------------
    def build(self) -> Graph:
        self.declare_inputs()
        active = [layer for layer in self.layers if self.in_test_phase(layer.msg)]
        for layer in active:  # input layers first: they have no bottoms
            if layer.msg.type == "Input":
                self.layer_input(layer)
        active = [layer for layer in active if layer.msg.type != "Input"]
        if not self.graph.inputs:
            raise MissingInputShapeError("the network declares no input; add input + input_dim, input_shape, "
                                         "or an Input layer", path=self.path, line=1)
        self.bind_quirk_input(active)
        self.order(active)
        used = {s for n in self.graph for s in n.inputs}
        outs = [n.name for n in self.graph if n.name not in used and n.op != "input"]
        self.graph.outputs = outs or [n.name for n in self.graph][-1:]
        return self.graph

    def order(self, active: list[_Layer]) -> None:
        """Build ``active`` layers as their bottoms become available, in O(n log n) (Kahn's algorithm).

        The order is that of sweeping the file top to bottom again and again, building each
        layer whose bottoms exist: a layer made ready by the one at position ``pos`` is built in
        the same sweep if it comes later in the file, else in the next (this decides which
        producer an in-place blob refers to when layers are listed out of order).
        """
        waiting, missing = self.dependencies(active)
        ready = [(0, pos) for pos, n in enumerate(missing) if not n]  # (sweep, position): a heap, sorted
        done = [False] * len(active)
        while ready:
            sweep, pos = heapq.heappop(ready)
            self.steps += 1
            self.layer(active[pos])
            done[pos] = True
            for blob in active[pos].msg.top:
                for other in waiting.pop(blob, []) if blob in self.blobs else []:
                    self.steps += 1
                    missing[other] -= 1
                    if not missing[other]:
                        heapq.heappush(ready, (sweep if other > pos else sweep + 1, other))
        self.raise_cycle([layer for pos, layer in enumerate(active) if not done[pos]])

    def dependencies(self, active: list[_Layer]) -> tuple[dict[str, list[int]], list[int]]:
        """For each blob not yet available, the layers that read it; for each layer, how many it misses."""
        waiting: dict[str, list[int]] = {}
        missing = [0] * len(active)
        have = set(self.blobs)
        for pos, layer in enumerate(active):
            for blob in set(layer.msg.bottom) - have:
                waiting.setdefault(blob, []).append(pos)
                missing[pos] += 1
        return waiting, missing

    def raise_cycle(self, pending: list[_Layer]) -> None:
        """Name the layers that never got their bottoms (they wait on each other's tops)."""
        if pending:
            names = [layer.name for layer in pending]
            raise self.err(GraphCycleError, f"layers wait on each other's tops (cycle among: "
                           f"{', '.join(names[:6])}{', …' if len(names) > 6 else ''})", pending[0])

    @staticmethod
    def in_test_phase(msg: Any) -> bool:
        if any(r.HasField("phase") and r.phase == 0 for r in msg.include):
            return False
        if any(r.HasField("phase") and r.phase == 1 for r in msg.exclude):
            return False
        return not (msg.HasField("phase") and msg.phase == 0)

    def layer_input(self, layer: _Layer) -> None:
        shapes = [tuple(int(d) for d in s.dim) for s in layer.msg.input_param.shape]
        if not shapes:
            raise self.err(MissingInputShapeError, "Input layer has no input_param { shape { dim … } }", layer)
        if len(shapes) not in (1, len(layer.msg.top)):
            raise self.err(MissingInputShapeError, f"{len(layer.msg.top)} tops but {len(shapes)} shapes", layer)
        for i, top in enumerate(layer.msg.top):
            shape = shapes[i if len(shapes) > 1 else 0]
            self.check_shape(shape, top, layer)
            node = self.add(layer, top, "input", [], {"shape": shape})
            self.blobs[top] = node.name

    def layer(self, layer: _Layer) -> None:
        handler = _HANDLERS.get(layer.msg.type)
        if handler is None:
            raise self.err(UnsupportedLayerError, f"layer type '{layer.msg.type}' is not supported; supported types: "
                           f"{', '.join(SUPPORTED_TYPES)}", layer)
        inputs = [self.blobs[b] for b in layer.msg.bottom]
        arity = _ARITY.get(layer.msg.type, (1, 1))
        if not arity[0] <= len(inputs) <= (arity[1] or len(inputs)):
            raise self.err(ShapeError, f"{layer.msg.type} takes {arity[0]}"
                           f"{'+' if arity[1] is None else ('' if arity[0] == arity[1] else f'-{arity[1]}')} "
                           f"bottoms, got {len(inputs)}", layer)
        if layer.msg.type != "Split" and len(layer.msg.top) != 1:
            raise self.err(ShapeError, f"{layer.msg.type} must have exactly one top, got {len(layer.msg.top)}", layer)
        try:
            node_name = handler(self, layer, inputs)
        except ValueError as exc:
            raise self.err(ShapeError, str(exc), layer) from None
        if node_name is not None:
            self.blobs[layer.msg.top[0]] = node_name


def _conv(b: _Builder, layer: _Layer, inputs: list[str], deconv: bool = False) -> str:
    p = layer.msg.convolution_param
    shape = b.shape_of(inputs[0])
    if len(shape) != 4:
        raise ValueError(f"{layer.msg.type} needs a 4-D (N, C, H, W) bottom, got {list(shape)}")
    if not p.HasField("num_output") or p.num_output <= 0:
        raise ValueError("convolution_param.num_output must be set and positive")
    kernel = _hw(p, "kernel_size", "kernel_h", "kernel_w", None)
    if kernel is None:
        raise ValueError("convolution_param needs kernel_size (or kernel_h and kernel_w)")
    dil = list(p.dilation)
    dilation = (1, 1) if not dil else ((dil[0], dil[0]) if len(dil) == 1 else (dil[0], dil[1]))
    if len(dil) > 2:
        raise ValueError("'dilation' has more than 2 values")
    attrs: dict[str, Any] = {"in_channels": shape[1], "out_channels": int(p.num_output), "kernel_size": kernel,
             "stride": _hw(p, "stride", "stride_h", "stride_w", 1), "padding": _hw(p, "pad", "pad_h", "pad_w", 0),
             "dilation": (int(dilation[0]), int(dilation[1])), "groups": int(p.group), "bias": bool(p.bias_term)}
    if attrs["groups"] <= 0 or shape[1] % attrs["groups"] or attrs["out_channels"] % attrs["groups"]:
        raise ValueError(f"group {attrs['groups']} must divide both {shape[1]} input and "
                         f"{attrs['out_channels']} output channels")
    if min(attrs["stride"]) <= 0 or min(kernel) <= 0 or min(attrs["dilation"]) <= 0:
        raise ValueError("kernel_size, stride and dilation must be positive")
    (_check_deconv_stride if deconv else _check_conv_pad)(attrs)
    if deconv:
        attrs["output_padding"] = (0, 0)
    return b.add(layer, layer.name, "deconv" if deconv else "conv", inputs, attrs).name


def _extent(attrs: dict[str, Any]) -> list[int]:
    """Rows and columns a dilated kernel spans (what pad and deconvolution stride are measured against)."""
    return [d * (k - 1) + 1 for k, d in zip(attrs["kernel_size"], attrs["dilation"])]


def _check_conv_pad(attrs: dict[str, Any]) -> None:
    """A convolution's pad must be smaller than its dilated kernel: else border outputs see only padding."""
    if any(p >= e for p, e in zip(attrs["padding"], _extent(attrs))):
        raise ValueError(f"pad {list(attrs['padding'])} must be smaller than the (dilated) kernel extent "
                         f"{_extent(attrs)}: border outputs would see only padding")


def _check_deconv_stride(attrs: dict[str, Any]) -> None:
    """A deconvolution's stride must not exceed its dilated kernel: else outputs between kernel footprints
    get nothing (and PyTorch's CPU kernel takes time quadratic in the stride)."""
    if any(s > e for s, e in zip(attrs["stride"], _extent(attrs))):
        raise ValueError(f"stride {list(attrs['stride'])} must not exceed the (dilated) kernel extent "
                         f"{_extent(attrs)}: outputs between kernel footprints would get nothing")


def _check_batch_norm(eps: float, momentum: float, shape: tuple[int, ...], track: bool) -> None:
    """``eps`` positive and finite, momentum in [0, 1]; without running stats every channel needs 2+ values."""
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"batch_norm_param.eps must be positive and finite, got {eps}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BatchNorm momentum (1 - moving_average_fraction in stock Caffe) must be in [0, 1], "
                         f"got {momentum}")
    if not track and math.prod(shape) // shape[1] < 2:
        raise ValueError(f"BatchNorm without running stats (track_running_stats: false) normalises over batch "
                         f"statistics and needs more than 1 value per channel; bottom {list(shape)} has 1")


def _batch_norm(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.batch_norm_param
    shape = b.shape_of(inputs[0])
    if len(shape) not in (2, 4):
        raise ValueError(f"BatchNorm needs a 2-D or 4-D bottom, got {list(shape)}")
    automtl_fields = any(p.HasField(f) for f in ("track_running_stats", "momentum", "affine"))
    if automtl_fields or b.automtl:
        momentum = _f32(p.momentum)
        affine = bool(p.affine)
        track = bool(p.track_running_stats)
    else:
        momentum = _f32(1.0 - _f32(p.moving_average_fraction))
        affine = False  # stock Caffe: the affine part is a following Scale layer (folded below)
        track = True
    _check_batch_norm(_f32(p.eps), momentum, shape, track)
    attrs = {"num_features": shape[1], "eps": _f32(p.eps), "momentum": momentum, "affine": affine,
             "track_running_stats": track, "dims": 2 if len(shape) == 4 else 1}
    node = b.add(layer, layer.name, "batch_norm", inputs, attrs)
    if not automtl_fields and not b.automtl:
        b.caffe_bn.add(node.name)
    return node.name


def _scale(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.scale_param
    if len(inputs) != 1:
        raise ValueError("Scale with a second bottom (learned scale blob) is not supported")
    if p.axis != 1 or p.num_axes != 1:
        raise ValueError("Scale is supported over the channel axis only (axis: 1, num_axes: 1)")
    if len(b.shape_of(inputs[0])) < 2:
        raise ValueError(f"Scale needs a bottom with a channel axis (2-D or more), got "
                         f"{list(b.shape_of(inputs[0]))}")
    src = b.graph[inputs[0]]
    if (src.name in b.caffe_bn and not src.attrs["affine"] and p.bias_term
            and b.consumers.get(src.name, 0) == 0):
        src.attrs["affine"] = True  # BatchNorm + Scale = one affine BN
        b.caffe_bn.discard(src.name)
        return src.name
    return b.add(layer, layer.name, "scale", inputs, {"num_features": b.shape_of(inputs[0])[1],
                                              "bias": bool(p.bias_term)}).name


def _relu(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    slope = _finite(layer.msg.relu_param.negative_slope, "relu_param.negative_slope")
    if slope:
        return b.add(layer, layer.name, "leaky_relu", inputs, {"negative_slope": slope}).name
    return b.add(layer, layer.name, "relu", inputs, {}).name


def _prelu(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    shared = layer.msg.prelu_param.channel_shared
    shape = b.shape_of(inputs[0])
    channels = 1 if shared or len(shape) < 2 else shape[1]
    return b.add(layer, layer.name, "prelu", inputs, {"num_parameters": channels}).name


def _swish(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    if _f32(layer.msg.swish_param.beta) != 1.0:
        raise ValueError("Swish is supported with beta: 1 only")
    return b.add(layer, layer.name, "silu", inputs, {}).name


def _pooling(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.pooling_param
    shape = b.shape_of(inputs[0])
    if len(shape) != 4:
        raise ValueError(f"Pooling needs a 4-D bottom, got {list(shape)}")
    if p.pool == 2:
        raise ValueError("STOCHASTIC pooling is not supported (MAX and AVE are)")
    method = "max" if p.pool == 0 else "avg"
    if p.global_pooling:
        return b.add(layer, layer.name, "global_pool", inputs, {"method": method}).name
    kernel = _hw(p, "kernel_size", "kernel_h", "kernel_w", None)
    if kernel is None:
        raise ValueError("pooling_param needs kernel_size (or kernel_h/kernel_w, or global_pooling)")
    stride = _hw(p, "stride", "stride_h", "stride_w", 1)
    pad = _hw(p, "pad", "pad_h", "pad_w", 0)
    if min(kernel) <= 0 or min(stride) <= 0:
        raise ValueError("kernel_size and stride must be positive")
    ceil = p.round_mode == 0 if p.HasField("round_mode") else bool(p.ceil_mode)
    attrs: dict[str, Any] = {"kernel_size": kernel, "stride": stride, "padding": pad, "ceil_mode": ceil}
    if method == "avg":
        attrs["count_include_pad"] = True
    return b.add(layer, layer.name, f"{method}_pool", inputs, attrs).name


def _eltwise(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.eltwise_param
    shapes = [b.shape_of(i) for i in inputs]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"Eltwise bottoms have different shapes: {', '.join(str(list(s)) for s in shapes)}")
    op = {0: "mul", 1: "add", 2: "max"}[p.operation]
    attrs: dict[str, Any] = {}
    if p.coeff:
        if op != "add":
            raise ValueError("Eltwise coeff is only allowed with operation: SUM")
        if len(p.coeff) != len(inputs):
            raise ValueError(f"Eltwise has {len(p.coeff)} coeffs for {len(inputs)} bottoms")
        coeffs = tuple(_finite(c, "eltwise_param.coeff") for c in p.coeff)
        if any(c != 1.0 for c in coeffs):
            attrs["coeffs"] = coeffs
    return b.add(layer, layer.name, op, inputs, attrs).name


def _concat(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.concat_param
    axis = int(p.axis) if p.HasField("axis") or not p.HasField("concat_dim") else int(p.concat_dim)
    rank = len(b.shape_of(inputs[0]))
    if not -rank <= axis < rank:
        raise ValueError(f"Concat axis {axis} is outside a {rank}-D bottom")
    return b.add(layer, layer.name, "concat", inputs, {"dim": axis}).name


def _inner_product(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.inner_product_param
    if p.transpose:
        raise ValueError("InnerProduct with transpose: true is not supported")
    if not p.HasField("num_output") or p.num_output <= 0:
        raise ValueError("inner_product_param.num_output must be set and positive")
    shape = b.shape_of(inputs[0])
    axis = int(p.axis) % len(shape) if shape else 1
    src = inputs[0]
    if len(shape) > axis + 1:  # Caffe flattens everything from ``axis`` on
        src = b.add(layer, f"{layer.name}/flatten", "flatten", [src], {"start_dim": axis, "end_dim": -1}).name
        shape = b.shape_of(src)
    return b.add(layer, layer.name, "linear", [src], {"in_features": shape[-1], "out_features": int(p.num_output),
                                             "bias": bool(p.bias_term)}).name


def _flatten(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
    p = layer.msg.flatten_param
    return b.add(layer, layer.name, "flatten", inputs, {"start_dim": int(p.axis), "end_dim": int(p.end_axis)}).name


def _split(b: _Builder, layer: _Layer, inputs: list[str]) -> None:
    for top in layer.msg.top:  # Split copies a blob: every top is the same node
        b.blobs[top] = inputs[0]
    return None


def _simple(op: str) -> Callable[[_Builder, _Layer, list[str]], str]:
    def handler(b: _Builder, layer: _Layer, inputs: list[str]) -> str:
        attrs: dict[str, Any] = {}
        if op == "dropout":
            ratio = _f32(layer.msg.dropout_param.dropout_ratio)
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"dropout_ratio {ratio} is outside [0, 1]")
            attrs = {"p": ratio}
        elif op == "softmax":
            attrs = {"dim": int(layer.msg.softmax_param.axis)}
        return b.add(layer, layer.name, op, inputs, attrs).name
    return handler


_HANDLERS: dict[str, Callable[[_Builder, _Layer, list[str]], str | None]] = {
    "Convolution": _conv,
    "Deconvolution": lambda b, layer, i: _conv(b, layer, i, deconv=True),
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "ReLU": _relu,
    "ReLU6": _simple("relu6"),
    "PReLU": _prelu,
    "Sigmoid": _simple("sigmoid"),
    "TanH": _simple("tanh"),
    "Swish": _swish,
    "Pooling": _pooling,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "InnerProduct": _inner_product,
    "Dropout": _simple("dropout"),
    "Flatten": _flatten,
    "Softmax": _simple("softmax"),
    "Split": _split,
}
_ARITY: dict[str, tuple[int, int | None]] = {"Eltwise": (2, None), "Concat": (1, None), "Scale": (1, 2)}


def loads_prototxt(text: str, path: str = "<string>") -> Graph:
    """Parse prototxt ``text`` into a :class:`Graph` (``path`` only names it in errors)."""
    net = parse_net(text, path)
    return _Builder(net, path, text).build()


def load_prototxt(path: str | os.PathLike[str]) -> Graph:
    """Load a ``.prototxt`` backbone (stock Caffe or AutoMTL dialect) as a :class:`Graph` with shapes.

    Example::

        g = load_prototxt("prototxt/resnet18.prototxt")
        print(g.param_count(), g.output_shape)
        net = g.to_module()
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise PrototxtSyntaxError(f"not UTF-8 text: {exc}", path=path) from None
    return loads_prototxt(text, path)

