"""Write a :class:`Graph` as Caffe prototxt, in the AutoMTL dialect or stock BVLC Caffe.

Every node becomes one layer whose name and top blob are the node name, so
``load_prototxt(to_prototxt(g))`` gives back the same nodes. Ops Caffe cannot express
(``function``, ``module``, layer/group norm, GELU …) raise :class:`ExportError` naming the node.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from google.protobuf import text_format

from automtl.errors import ExportError
from automtl.graph.caffe_schema import NetParameter
from automtl.graph.ir import Graph, Node
from automtl.io import atomic_write_text

DIALECTS = ("automtl", "caffe")


def _set_hw(param: Any, field: str, h: str, w: str, value: tuple[int, int], default: int | None) -> None:
    """Scalar when square (skipped when it equals the Caffe default), ``_h``/``_w`` otherwise."""
    a, b = int(value[0]), int(value[1])
    if a == b:
        if default is None or a != default:
            getattr(param, field).append(a)
    else:
        setattr(param, h, a)
        setattr(param, w, b)


class _Writer:
    def __init__(self, graph: Graph, dialect: str) -> None:
        if dialect not in DIALECTS:
            raise ExportError(f"unknown dialect '{dialect}'; choose one of {', '.join(DIALECTS)}")
        self.graph = graph
        self.automtl = dialect == "automtl"
        self.net = NetParameter(name=graph.name)

    def layer(self, node: Node, ltype: str) -> Any:
        layer = self.net.layer.add(name=node.name, type=ltype)
        layer.bottom.extend(node.inputs)
        layer.top.append(node.name)
        return layer

    def fail(self, node: Node, why: str) -> ExportError:
        return ExportError(f"{node.op} node cannot be written as Caffe prototxt: {why}", layer=node.name)

    def write(self) -> Any:
        for node in self.graph:
            handler = _WRITERS.get(node.op)
            if handler is None:
                raise self.fail(node, f"no Caffe layer for op '{node.op}' (exportable ops: "
                                      f"{', '.join(sorted(_WRITERS))})")
            handler(self, node)
        return self.net


def _input(w: _Writer, n: Node) -> None:
    shape = n.attrs.get("shape") or n.shape
    if not shape:
        raise w.fail(n, "the input has no shape")
    if w.automtl:
        w.net.input.append(n.name)
        w.net.input_dim.extend(int(d) for d in shape)
    else:
        layer = w.net.layer.add(name=n.name, type="Input")
        layer.top.append(n.name)
        layer.input_param.shape.add().dim.extend(int(d) for d in shape)


def _conv(w: _Writer, n: Node) -> None:
    a = n.attrs
    if n.op == "deconv" and tuple(a.get("output_padding", (0, 0))) != (0, 0):
        raise w.fail(n, "Caffe Deconvolution has no output_padding")
    padding = a["padding"]
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif (padding == "same" and tuple(a["stride"]) == (1, 1)
              and all((d * (k - 1)) % 2 == 0 for d, k in zip(a["dilation"], a["kernel_size"]))):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(a["dilation"], a["kernel_size"]))
        else:
            raise w.fail(n, f"padding '{padding}' has no symmetric Caffe equivalent")
    layer = w.layer(n, "Deconvolution" if n.op == "deconv" else "Convolution")
    p = layer.convolution_param
    p.num_output = a["out_channels"]
    p.bias_term = bool(a["bias"])
    _set_hw(p, "pad", "pad_h", "pad_w", padding, None if w.automtl else 0)
    _set_hw(p, "kernel_size", "kernel_h", "kernel_w", a["kernel_size"], None)
    _set_hw(p, "stride", "stride_h", "stride_w", a["stride"], None if w.automtl else 1)
    if w.automtl or a["groups"] != 1:
        p.group = a["groups"]
    dil = tuple(int(d) for d in a["dilation"])
    if w.automtl or dil != (1, 1):
        p.dilation.extend(dil[:1] if dil[0] == dil[1] else dil)


def _batch_norm(w: _Writer, n: Node) -> None:
    a = n.attrs
    layer = w.layer(n, "BatchNorm")
    p = layer.batch_norm_param
    if w.automtl:
        p.track_running_stats = bool(a["track_running_stats"])
        p.eps = a["eps"]
        if a["momentum"] is not None:
            p.momentum = a["momentum"]
        p.affine = bool(a["affine"])
        return
    if not a["track_running_stats"]:
        raise w.fail(n, "stock Caffe BatchNorm always keeps running statistics (track_running_stats: false "
                        "needs the automtl dialect)")
    p.eps = a["eps"]
    if a["momentum"] is not None and abs(a["momentum"] - 0.001) > 1e-9:
        p.moving_average_fraction = 1.0 - a["momentum"]
    if a["affine"]:
        scale = w.net.layer.add(name=f"{n.name}/scale", type="Scale")
        scale.bottom.append(n.name)
        scale.top.append(n.name)
        scale.scale_param.bias_term = True


def _scale(w: _Writer, n: Node) -> None:
    prev = w.graph[n.inputs[0]]
    if not w.automtl and prev.op == "batch_norm" and not prev.attrs["affine"]:
        raise w.fail(n, "a Scale right after a non-affine BatchNorm would be folded into it on reload")
    w.layer(n, "Scale").scale_param.bias_term = bool(n.attrs.get("bias", True))


def _activation(ltype: str) -> Callable[[_Writer, Node], None]:
    def write(w: _Writer, n: Node) -> None:
        layer = w.layer(n, ltype)
        if n.op == "leaky_relu":
            layer.relu_param.negative_slope = n.attrs["negative_slope"]
        elif n.op == "prelu":
            layer.prelu_param.channel_shared = n.attrs.get("num_parameters", 1) == 1
        elif n.op == "dropout":
            layer.dropout_param.dropout_ratio = n.attrs.get("p", 0.5)
        elif n.op == "softmax":
            layer.softmax_param.axis = n.attrs.get("dim", 1)
    return write


def _pool(w: _Writer, n: Node) -> None:
    a = n.attrs
    if n.op == "avg_pool" and not a.get("count_include_pad", True):
        raise w.fail(n, "Caffe AVE pooling always counts the padding (count_include_pad=False)")
    layer = w.layer(n, "Pooling")
    p = layer.pooling_param
    p.pool = 0 if n.op == "max_pool" else 1
    _set_hw(p, "kernel_size", "kernel_h", "kernel_w", a["kernel_size"], None)
    _set_hw(p, "stride", "stride_h", "stride_w", a["stride"], None)
    _set_hw(p, "pad", "pad_h", "pad_w", a["padding"], None if w.automtl else 0)
    if w.automtl or not a.get("ceil_mode", False):
        p.round_mode = 0 if a.get("ceil_mode", False) else 1


def _global_pool(w: _Writer, n: Node) -> None:
    if n.op == "adaptive_avg_pool" and n.attrs["output_size"] not in (1, (1, 1), [1, 1]):
        raise w.fail(n, f"adaptive pooling to {n.attrs['output_size']} (only global pooling to 1x1 exists)")
    layer = w.layer(n, "Pooling")
    layer.pooling_param.pool = 0 if n.attrs.get("method") == "max" else 1
    layer.pooling_param.global_pooling = True


def _eltwise(w: _Writer, n: Node) -> None:
    shapes = [s for s in (w.graph[i].shape for i in n.inputs) if s is not None]
    if len(shapes) == len(n.inputs) and any(s != shapes[0] for s in shapes):
        raise w.fail(n, f"Caffe Eltwise needs equal shapes, not broadcasting ones {[list(s) for s in shapes]}")
    layer = w.layer(n, "Eltwise")
    layer.eltwise_param.operation = {"mul": 0, "add": 1, "max": 2}[n.op]
    if n.attrs.get("coeffs"):
        layer.eltwise_param.coeff.extend(n.attrs["coeffs"])


def _linear(w: _Writer, n: Node) -> None:
    src = w.graph[n.inputs[0]]
    if src.shape is not None and len(src.shape) != 2:
        raise w.fail(n, f"Caffe InnerProduct flattens its bottom; this linear reads a {len(src.shape)}-D "
                        "input along its last axis")
    p = w.layer(n, "InnerProduct").inner_product_param
    p.num_output = n.attrs["out_features"]
    p.bias_term = bool(n.attrs["bias"])


def _flatten(w: _Writer, n: Node) -> None:
    p = w.layer(n, "Flatten").flatten_param
    if n.attrs.get("start_dim", 1) != 1:
        p.axis = n.attrs["start_dim"]
    if n.attrs.get("end_dim", -1) != -1:
        p.end_axis = n.attrs["end_dim"]


def _concat(w: _Writer, n: Node) -> None:
    layer = w.layer(n, "Concat")
    if n.attrs.get("dim", 1) != 1:
        layer.concat_param.axis = n.attrs["dim"]


_WRITERS: dict[str, Callable[[_Writer, Node], None]] = {
    "input": _input,
    "conv": _conv,
    "deconv": _conv,
    "batch_norm": _batch_norm,
    "scale": _scale,
    "relu": _activation("ReLU"),
    "leaky_relu": _activation("ReLU"),
    "relu6": _activation("ReLU6"),
    "prelu": _activation("PReLU"),
    "sigmoid": _activation("Sigmoid"),
    "tanh": _activation("TanH"),
    "silu": _activation("Swish"),
    "dropout": _activation("Dropout"),
    "softmax": _activation("Softmax"),
    "identity": _activation("Split"),
    "max_pool": _pool,
    "avg_pool": _pool,
    "global_pool": _global_pool,
    "adaptive_avg_pool": _global_pool,
    "add": _eltwise,
    "mul": _eltwise,
    "max": _eltwise,
    "linear": _linear,
    "flatten": _flatten,
    "concat": _concat,
}
EXPORTABLE_OPS = tuple(sorted(_WRITERS))


def dumps_prototxt(graph: Graph, *, dialect: str = "automtl") -> str:
    """The prototxt text of ``graph`` (``dialect``: ``"automtl"`` or ``"caffe"``)."""
    return text_format.MessageToString(_Writer(graph, dialect).write())


def to_prototxt(graph: Graph, path: str | os.PathLike[str] | None = None, *, dialect: str = "automtl") -> str:
    """Write ``graph`` as prototxt to ``path`` (atomically: no half-written file) and return the text.

    Example::

        g = from_module(torchvision.models.mobilenet_v2().features, torch.randn(1, 3, 224, 224))
        to_prototxt(g, "mobilenetv2.prototxt")            # AutoMTL dialect
        to_prototxt(g, "mobilenetv2_caffe.prototxt", dialect="caffe")
    """
    text = dumps_prototxt(graph, dialect=dialect)
    if path is not None:
        atomic_write_text(path, text)
    return text
