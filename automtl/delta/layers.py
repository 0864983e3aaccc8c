"""Delta layers: a task's linear / convolution layer computed on top of the base task's.

``W_task = W_base + ΔW`` with a sparse ΔW (:class:`~automtl.delta.weights.WeightDelta`). Given
the base layer's input ``x_b`` and output ``y_b``, the task's output is

    y_task = y_b + W_task·Δx + ΔW·x_b + Δb,     Δx = x_task − x_b,

so a task computes only the sparse deltas on top of the base. Training uses the equal merged
form ``W_task·x_task`` (one dense op) and records ``act_l1 · mean|Δx|`` (``x_b`` detached unless
``delta.base_grad``, so the penalty moves the task, not the base); inference zeroes
``|Δx|`` below the layer's threshold; a deployed (``sparse=True``) layer runs the sparse kernels
of :mod:`automtl.delta.kernels`. The base layer is referenced, not owned: it belongs to the base
task's network.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automtl.delta import kernels
from automtl.delta.weights import WeightDelta
from automtl.errors import ModelError

_CONTEXT: list[Any] = []  # the active DeltaContext (automtl.delta.wrap), innermost last


def active_context() -> Any:
    """The innermost active delta context (None outside one)."""
    return _CONTEXT[-1] if _CONTEXT else None


class DeltaLayer(nn.Module, metaclass=ABCMeta):
    """``base`` (owned by the base task) plus the sparse ``delta`` of one task; see the module
    docstring. ``forward(x, x_b=None, y_b=None)``: without the base activations (and outside a
    delta context) it computes the merged layer densely."""

    def __init__(self, base: nn.Module, delta: WeightDelta, *, sparse: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "base", base)  # a reference: not a submodule of this layer
        self.delta = delta
        self.sparse = sparse
        self._cache: dict[str, tuple[Any, Any]] = {}

    base: Any

    # ---- the merged layer --------------------------------------------------------------------
    def _base_weight(self) -> torch.Tensor:
        w = self.base.weight
        return w if self.delta.base_grad else w.detach()

    def _merged_weight(self) -> torch.Tensor:
        return self._base_weight() + self.delta.effective()

    @property
    def weight(self) -> torch.Tensor:
        """``W_base + ΔW`` (the base weight detached unless ``delta.base_grad``); read inside a
        delta context, the weight is routed back to this layer when a network calls
        ``F.linear`` / ``F.conv2d`` with it (:mod:`automtl.delta.wrap`)."""
        w = self._merged_weight()
        ctx = active_context()
        if ctx is not None:
            ctx.register_weight(w, self)
        return w

    @property
    def bias(self) -> torch.Tensor | None:
        """``b_base + Δb`` (None when the base layer has no bias)."""
        b = self.base.bias
        if b is None:
            return None
        b = b if self.delta.base_grad else b.detach()
        db = self.delta.bias()
        return b + db if db is not None else b

    @abstractmethod
    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The base layer's operation with weight ``w`` and bias ``b``."""

    @abstractmethod
    def dense_macs(self, y: torch.Tensor) -> int:
        """Multiply-accumulates of the dense layer producing ``y``."""

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, x_b: torch.Tensor | None = None,
                y_b: torch.Tensor | None = None) -> torch.Tensor:
        d = self.delta
        if x_b is None:
            ctx = active_context()
            if ctx is not None:
                x_b, y_b = ctx.base_io(self.base)
        d.note_forward()
        shared = x_b is None or x_b is x
        if d.training or x_b is None:  # the delta's mode: it is registered where this layer may not be
            if not shared:
                assert x_b is not None
                d.note_activation(x - (x_b if d.base_grad else x_b.detach()))
            return self._op(x, self._merged_weight(), self.bias)
        if shared:
            d.last_activation = (0, x.numel())
            if self.sparse and y_b is not None:
                return self._with_weight_delta(y_b, x)
            return self._op(x, *self._inference_weights())
        thr = float(d.threshold)
        if self.sparse and y_b is not None:
            dx = x - x_b
            if thr > 0:
                dx = dx.masked_fill(dx.abs() < thr, 0.0)
            d.last_activation = (int(torch.count_nonzero(dx)), dx.numel()) if d.track_activations else None
            return self._with_weight_delta(y_b, x_b) + self._activation_term(dx)
        if thr > 0:  # x_b + Δx with |Δx| < thr zeroed
            keep = (x - x_b).abs() >= thr
            if d.track_activations:
                d.last_activation = (int(torch.count_nonzero(keep & (x != x_b))), x.numel())
            x = torch.where(keep, x, x_b)
        elif d.track_activations:
            d.last_activation = (int(torch.count_nonzero(x != x_b)), x.numel())
        return self._op(x, *self._inference_weights())

    # ---- sparse inference ----------------------------------------------------------------------
    def _cached(self, name: str, key: Any, make: Any) -> Any:
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            with torch.no_grad():
                hit = (key, make())
            self._cache[name] = hit
        return hit[1]

    def _versions(self) -> tuple[Any, ...]:
        d = self.delta
        own = [*d.parameters(), d.index, self.base.weight, self.base.bias]
        return tuple((id(t), t._version) if t is not None else None for t in own)

    def _inference_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The merged weight and bias at inference, cached until a weight changes (computed
        afresh while gradients are on)."""
        if torch.is_grad_enabled():
            return self._base_weight() + self.delta.effective(deterministic=True), self.bias
        key = self._versions()
        w = self._cached("w", key, lambda: self._base_weight() + self.delta.effective(deterministic=True))
        if self.base.bias is None:
            return w, None
        return w, self._cached("b", key, lambda: self.bias)

    def delta_csr(self) -> torch.Tensor:
        """ΔW as a CSR matrix (out, rest), cached until a weight changes."""
        def make() -> torch.Tensor:
            d = self.delta
            out = self.base.weight.shape[0]
            if d.mode == "support":
                assert d.index is not None and d.value is not None
                cols = d.numel // out
                rows = torch.div(d.index, cols, rounding_mode="floor")
                return kernels.csr_from_sorted(rows, d.index - rows * cols, d.value.detach(), (out, cols))
            return kernels.csr_of_rows(d.effective(deterministic=True).detach().reshape(out, -1))
        return self._cached("csr", self._versions(), make)

    def _with_weight_delta(self, y_b: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        out = y_b + self._weight_term(x_b) if self.delta.nonzero() else y_b
        db = self.delta.bias()
        return out + self._bias_shape(db) if db is not None else out

    def _bias_shape(self, db: torch.Tensor) -> torch.Tensor:
        return db

    @abstractmethod
    def _weight_term(self, x_b: torch.Tensor) -> torch.Tensor:
        """``ΔW·x_b`` with the sparse kernels."""

    @abstractmethod
    def _activation_term(self, dx: torch.Tensor) -> torch.Tensor:
        """``W_task·Δx`` with the sparse kernels."""

    def extra_repr(self) -> str:
        return f"base={type(self.base).__name__}{tuple(self.base.weight.shape)}, sparse={self.sparse}"


class DeltaLinear(DeltaLayer):
    """A task's ``nn.Linear`` as the base task's plus a sparse delta."""

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)

    def dense_macs(self, y: torch.Tensor) -> int:
        return y.numel() * int(self.base.weight.shape[1])

    def _weight_term(self, x_b: torch.Tensor) -> torch.Tensor:
        return kernels.linear_weight_term(x_b, self.delta_csr())

    def _activation_term(self, dx: torch.Tensor) -> torch.Tensor:
        wt = self._cached("wt", self._versions(), lambda: (self.base.weight + self.delta.effective(
            deterministic=True)).t().contiguous())
        return kernels.linear_activation_term(dx, wt)


class DeltaConv2d(DeltaLayer):
    """A task's ``nn.Conv2d`` as the base task's plus a sparse delta (zero padding only)."""

    def __init__(self, base: nn.Module, delta: WeightDelta, *, sparse: bool = False) -> None:
        if getattr(base, "padding_mode", "zeros") != "zeros":
            raise ModelError(f"a delta convolution needs zero padding, not {base.padding_mode!r}")
        super().__init__(base, delta, sparse=sparse)

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        c = self.base
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)

    def dense_macs(self, y: torch.Tensor) -> int:
        w = self.base.weight
        return y.numel() * int(w.shape[1] * w.shape[2] * w.shape[3])

    def _bias_shape(self, db: torch.Tensor) -> torch.Tensor:
        return db.view(1, -1, 1, 1)

    def _plain(self) -> bool:
        c = self.base
        return c.groups == 1 and not isinstance(c.padding, str)

    def _weight_term(self, x_b: torch.Tensor) -> torch.Tensor:
        c = self.base
        if not self._plain():
            return F.conv2d(x_b, self.delta.effective(deterministic=True), None, c.stride, c.padding,
                            c.dilation, c.groups)
        csr = self.delta_csr()
        taps = self._cached("tap_csr", self._versions(),
                            lambda: kernels.tap_csr(csr, tuple(c.kernel_size), int(c.in_channels)))
        return kernels.conv_weight_term(x_b, csr, kernel=tuple(c.kernel_size), stride=tuple(c.stride),
                                        padding=tuple(c.padding), dilation=tuple(c.dilation), taps=taps)

    def _activation_term(self, dx: torch.Tensor) -> torch.Tensor:
        c = self.base
        if not self._plain():
            return F.conv2d(dx, self._base_weight() + self.delta.effective(deterministic=True), None, c.stride,
                            c.padding, c.dilation, c.groups)
        taps = self._cached("taps", self._versions(), lambda: (self.base.weight + self.delta.effective(
            deterministic=True)).permute(2, 3, 1, 0).contiguous())
        return kernels.conv_activation_term(dx, taps, stride=tuple(c.stride), padding=tuple(c.padding),
                                            dilation=tuple(c.dilation))


def delta_layer(base: nn.Module, delta: WeightDelta | None = None, *, sparse: bool = False,
                **delta_kwargs: Any) -> DeltaLayer:
    """The delta layer of a base ``nn.Linear`` or ``nn.Conv2d`` (a new zero delta unless given)."""
    if isinstance(base, nn.Linear):
        cls: type[DeltaLayer] = DeltaLinear
    elif isinstance(base, nn.Conv2d):
        cls = DeltaConv2d
    else:
        raise ModelError(f"delta layers wrap nn.Linear or nn.Conv2d, not {type(base).__name__}")
    if delta is None:
        bias = tuple(base.bias.shape) if base.bias is not None else None
        delta = WeightDelta(tuple(base.weight.shape), bias, **delta_kwargs).to(base.weight.device)
    return cls(base, delta, sparse=sparse)


def supports_delta(module: nn.Module) -> bool:
    """Whether ``module`` can carry a delta (``nn.Linear``, zero-padded ``nn.Conv2d``)."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d)
                                             and module.padding_mode == "zeros")
