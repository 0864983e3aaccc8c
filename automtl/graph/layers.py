"""What each IR op means: the ``nn.Module`` that executes it and its parameter count.

The op vocabulary (attributes in brackets):

* ``input`` [shape]
* ``conv`` / ``deconv`` [in_channels, out_channels, kernel_size, stride, padding, dilation,
  groups, bias, (deconv) output_padding] — tuples of two ints for the spatial fields (a conv's
  padding may also be the string ``"same"``/``"valid"``)
* ``linear`` [in_features, out_features, bias]
* ``batch_norm`` [num_features, eps, momentum, affine, track_running_stats, dims (2: NCHW,
  the default; 1: NC)]
* ``layer_norm`` [normalized_shape, eps, elementwise_affine, bias]
* ``group_norm`` [num_groups, num_channels, eps, affine]
* ``scale`` [num_features, bias] — channel-wise affine (a Caffe ``Scale`` not after BN)
* activations: ``relu``, ``leaky_relu`` [negative_slope], ``relu6``, ``prelu``
  [num_parameters], ``sigmoid``, ``tanh``, ``gelu`` [approximate], ``silu``, ``hardswish``,
  ``hardsigmoid``
* ``max_pool`` / ``avg_pool`` [kernel_size, stride, padding, ceil_mode, (avg)
  count_include_pad]; ``global_pool`` [method: max|avg]; ``adaptive_avg_pool`` [output_size]
* ``add`` [coeffs or None], ``mul``, ``max`` — element-wise over all inputs
* ``concat`` [dim], ``flatten`` [start_dim, end_dim], ``dropout`` [p], ``softmax`` [dim],
  ``identity``
* ``module`` [module] — an ``nn.Module`` kept as is (torch.fx imports; each built network
  gets its own deep copy)
* ``function`` [target, kind, args, kwargs] — a torch.fx ``call_function``/``call_method``;
  ``args``/``kwargs`` hold :class:`Ref` placeholders for the node's inputs (``target`` may be
  an ``nn.Module`` called with keyword/constant arguments; it is deep-copied per network)
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from automtl.errors import UnsupportedLayerError

if False:  # pragma: no cover - typing only
    from automtl.graph.ir import Node


@dataclass(frozen=True)
class Ref:
    """Placeholder for the ``index``-th input of a ``function`` node."""

    index: int


def _fill(template: Any, values: list[torch.Tensor]) -> Any:
    if isinstance(template, Ref):
        return values[template.index]
    if isinstance(template, tuple):
        return tuple(_fill(t, values) for t in template)
    if isinstance(template, list):
        return [_fill(t, values) for t in template]
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


class Eltwise(nn.Module):
    """Element-wise SUM (with optional coefficients), PROD or MAX over all inputs."""

    def __init__(self, operation: str, coeffs: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.operation = operation
        self.coeffs = tuple(coeffs) if coeffs else None

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.operation == "add":
            if self.coeffs is None:
                out = xs[0]
                for x in xs[1:]:
                    out = out + x
                return out
            out = xs[0] * self.coeffs[0]
            for c, x in zip(self.coeffs[1:], xs[1:]):
                out = out + c * x
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.operation == "mul" else torch.maximum(out, x)
        return out

    def extra_repr(self) -> str:
        return f"{self.operation}, coeffs={self.coeffs}"


class Concat(nn.Module):
    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class Softmax(nn.Softmax):
    pass


class ChannelScale(nn.Module):
    """Per-channel ``y = w * x (+ b)`` over dim 1 (Caffe ``Scale``)."""

    def __init__(self, num_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = x * self.weight.view(shape)
        return y + self.bias.view(shape) if self.bias is not None else y


class GlobalPool(nn.Module):
    def __init__(self, method: str = "avg") -> None:
        super().__init__()
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "max":
            return torch.amax(x, dim=(2, 3), keepdim=True)
        return torch.mean(x, dim=(2, 3), keepdim=True)


class FunctionCall(nn.Module):
    """Runs a torch.fx ``call_function`` / ``call_method`` with the node's inputs filled in."""

    def __init__(self, target: Any, kind: str, args: Any, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.target = target
        self.kind = kind
        self.args = args
        self.kwargs = kwargs

    def forward(self, *xs: torch.Tensor) -> Any:
        args = _fill(self.args, list(xs))
        kwargs = _fill(self.kwargs, list(xs))
        if self.kind == "call_method":
            obj, *rest = args
            return getattr(obj, self.target)(*rest, **kwargs)
        return self.target(*args, **kwargs)

    def extra_repr(self) -> str:
        name = self.target if isinstance(self.target, str) else getattr(self.target, "__name__", str(self.target))
        return f"{self.kind} {name}"


def _conv(a: dict[str, Any]) -> nn.Module:
    padding = a["padding"] if isinstance(a["padding"], str) else tuple(a["padding"])
    return nn.Conv2d(a["in_channels"], a["out_channels"], tuple(a["kernel_size"]), tuple(a["stride"]),
                     padding, tuple(a["dilation"]), a["groups"], a["bias"])


def _deconv(a: dict[str, Any]) -> nn.Module:
    return nn.ConvTranspose2d(a["in_channels"], a["out_channels"], tuple(a["kernel_size"]), tuple(a["stride"]),
                              tuple(a["padding"]), tuple(a.get("output_padding", (0, 0))), a["groups"],
                              a["bias"], tuple(a["dilation"]))


def _pool(a: dict[str, Any], op: str) -> nn.Module:
    if op == "max_pool":
        return nn.MaxPool2d(tuple(a["kernel_size"]), tuple(a["stride"]), tuple(a["padding"]),
                            ceil_mode=a.get("ceil_mode", False))
    return nn.AvgPool2d(tuple(a["kernel_size"]), tuple(a["stride"]), tuple(a["padding"]),
                        ceil_mode=a.get("ceil_mode", False), count_include_pad=a.get("count_include_pad", True))


BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "input": lambda a: nn.Identity(),
    "identity": lambda a: nn.Identity(),
    "conv": _conv,
    "deconv": _deconv,
    "linear": lambda a: nn.Linear(a["in_features"], a["out_features"], a["bias"]),
    "batch_norm": lambda a: nn.BatchNorm2d(a["num_features"], a["eps"], a["momentum"], a["affine"],
                                           a["track_running_stats"]) if a.get("dims", 2) == 2 else
    nn.BatchNorm1d(a["num_features"], a["eps"], a["momentum"], a["affine"], a["track_running_stats"]),
    "layer_norm": lambda a: nn.LayerNorm(tuple(a["normalized_shape"]), a["eps"], a["elementwise_affine"],
                                         a.get("bias", True)),
    "group_norm": lambda a: nn.GroupNorm(a["num_groups"], a["num_channels"], a["eps"], a["affine"]),
    "scale": lambda a: ChannelScale(a["num_features"], a.get("bias", True)),
    "relu": lambda a: nn.ReLU(),
    "leaky_relu": lambda a: nn.LeakyReLU(a["negative_slope"]),
    "relu6": lambda a: nn.ReLU6(),
    "prelu": lambda a: nn.PReLU(a.get("num_parameters", 1), a.get("init", 0.25)),
    "sigmoid": lambda a: nn.Sigmoid(),
    "tanh": lambda a: nn.Tanh(),
    "gelu": lambda a: nn.GELU(a.get("approximate", "none")),
    "silu": lambda a: nn.SiLU(),
    "hardswish": lambda a: nn.Hardswish(),
    "hardsigmoid": lambda a: nn.Hardsigmoid(),
    "max_pool": lambda a: _pool(a, "max_pool"),
    "avg_pool": lambda a: _pool(a, "avg_pool"),
    "global_pool": lambda a: GlobalPool(a.get("method", "avg")),
    "adaptive_avg_pool": lambda a: nn.AdaptiveAvgPool2d(a["output_size"]),
    "add": lambda a: Eltwise("add", a.get("coeffs")),
    "mul": lambda a: Eltwise("mul"),
    "max": lambda a: Eltwise("max"),
    "concat": lambda a: Concat(a.get("dim", 1)),
    "flatten": lambda a: nn.Flatten(a.get("start_dim", 1), a.get("end_dim", -1)),
    "dropout": lambda a: nn.Dropout(a.get("p", 0.5)),
    "softmax": lambda a: Softmax(a.get("dim", 1)),
    "module": lambda a: copy.deepcopy(a["module"]),
    "function": lambda a: FunctionCall(copy.deepcopy(a["target"]) if isinstance(a["target"], nn.Module)
                                       else a["target"], a.get("kind", "call_function"), a.get("args", ()),
                                       a.get("kwargs", {})),
}

SUPPORTED_OPS = tuple(sorted(BUILDERS))


def build_layer(node: Node) -> nn.Module:
    """The module that executes ``node`` (fresh, default-initialised weights)."""
    try:
        builder = BUILDERS[node.op]
    except KeyError:
        raise UnsupportedLayerError(
            f"op '{node.op}' is not supported; supported ops: {', '.join(SUPPORTED_OPS)}", layer=node.name
        ) from None
    return builder(node.attrs)


def node_param_count(node: Node) -> int:
    """Learnable parameters of ``node`` computed from its attributes (no module built)."""
    a = node.attrs
    op = node.op
    if op in ("conv", "deconv"):
        k = math.prod(a["kernel_size"])
        return a["out_channels"] * (a["in_channels"] // a["groups"]) * k + (a["out_channels"] if a["bias"] else 0)
    if op == "linear":
        return a["in_features"] * a["out_features"] + (a["out_features"] if a["bias"] else 0)
    if op == "batch_norm":
        return 2 * a["num_features"] if a["affine"] else 0
    if op == "layer_norm":
        n = math.prod(a["normalized_shape"])
        return (n * (2 if a.get("bias", True) else 1)) if a["elementwise_affine"] else 0
    if op == "group_norm":
        return 2 * a["num_channels"] if a["affine"] else 0
    if op == "scale":
        return a["num_features"] * (2 if a.get("bias", True) else 1)
    if op == "prelu":
        return a.get("num_parameters", 1)
    if op == "module":
        return sum(p.numel() for p in a["module"].parameters())
    if op == "function" and isinstance(a.get("target"), nn.Module):  # a module called with kwargs
        return sum(p.numel() for p in a["target"].parameters())
    return 0
