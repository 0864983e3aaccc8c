"""``WeightDelta``: the sparse difference ΔW between one task's weight and the base task's.

Three layouts, one per training step of delta sharing:

* ``"l0"``: ``ΔW = z ⊙ δ`` with hard-concrete gates ``z`` (per element × per tensor) and the
  expected-L0 penalty (step 1, Diff-Pruning);
* ``"l1"``: ``ΔW = δ`` with an L1 penalty on δ (the alternative to L0 gates);
* ``"support"``: the support is fixed; only its entries are stored (``index`` + ``value``) and
  trained (steps 2 and 3), so the state dict holds ΔW sparse.

Penalties of the latest training forward are reported through ``auxiliary_losses()`` (the
trainer's protocol, :mod:`automtl.train.steps`), each one exactly once.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automtl.delta.masks import HardConcreteGate
from automtl.errors import CheckpointError, ConfigError

MODES = ("l0", "l1", "support")
DEFAULT_THRESHOLD = 0.15


def check_threshold(value: Any, *, key: str = "threshold") -> float:
    """``value`` as a threshold ≥ 0 (:class:`ConfigError` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError("a delta-activation threshold must be a finite number >= 0", key=key, value=value)
    return float(value)


def check_density(value: Any, *, key: str = "density") -> float:
    """``value`` as a density in (0, 1] (:class:`ConfigError` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError("a delta density must be in (0, 1]", key=key, value=value)
    return float(value)


class WeightDelta(nn.Module):
    """ΔW (and a dense Δbias) of one layer for one task; see the module docstring.

    Attributes set by the training phases (plain floats, not saved): ``l0_lambda`` and
    ``l1_lambda`` (weight penalties; the L0 one only above the expected density
    ``l0_target``), ``act_l1`` (L1 on the delta activations of the layer
    using this delta), ``base_grad`` (whether the task's loss may also move the base weight).
    The activation threshold is a saved buffer (``threshold``, 0 = off).
    """

    index: torch.Tensor | None
    threshold: torch.Tensor

    def __init__(self, weight_shape: Sequence[int], bias_shape: Sequence[int] | None = None, *,
                 mode: str = "l0", init_log_alpha: float = 2.0, threshold: float = 0.0) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in weight_shape)
        self.numel = math.prod(self.shape)
        self.init_log_alpha = float(init_log_alpha)
        self.l0_lambda = 0.0
        self.l0_target = 0.0
        self.l1_lambda = 0.0
        self.act_l1 = 0.0
        self.base_grad = False
        self.delta: nn.Parameter | None = None
        self.gate: HardConcreteGate | None = None
        self.value: nn.Parameter | None = None
        self.register_buffer("index", None)
        self.bias_delta = nn.Parameter(torch.zeros(tuple(bias_shape))) if bias_shape is not None else None
        self.register_buffer("threshold", torch.tensor(check_threshold(threshold)))
        self._pending: dict[str, torch.Tensor] = {}
        self._reported: dict[str, torch.Tensor] = {}
        #: (non-zero, total) entries of the latest thresholded delta activation at inference
        self.last_activation: tuple[int, int] | None = None
        #: whether inference records ``last_activation`` (off in deployed copies: it costs a pass)
        self.track_activations = True
        self.mode = ""
        self.set_mode(mode)

    # ---- layout ------------------------------------------------------------------------------
    def _like(self) -> dict[str, Any]:
        return {"device": self.threshold.device, "dtype": self.threshold.dtype}

    def set_mode(self, mode: str) -> None:
        """Switch to ``"l0"`` or ``"l1"`` keeping the current ΔW (support entries become δ)."""
        if mode not in MODES:
            raise ConfigError(f"unknown delta mode; use one of {MODES}", key="mode", value=mode)
        if mode == "support":
            raise ConfigError("fix a support with set_support(index) (or fix_support(deltas, density))",
                              key="mode", value=mode)
        if mode == self.mode:
            return
        with torch.no_grad():
            current = self.effective(deterministic=True).detach() if self.mode else torch.zeros(self.shape,
                                                                                                **self._like())
        self.delta = nn.Parameter(current.clone())
        self.gate = HardConcreteGate(self.shape, init_log_alpha=self.init_log_alpha).to(**self._like()) \
            if mode == "l0" else None
        self.value = None
        self.index = None
        self.mode = mode

    def set_support(self, index: torch.Tensor) -> None:
        """Keep only the flat positions ``index`` of ΔW (their current values); train only them."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.threshold.device).flatten().unique()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.numel):
            raise ConfigError(f"support positions must lie in [0, {self.numel})", key="index")
        with torch.no_grad():
            flat = self.effective(deterministic=True).detach().reshape(-1)
        self.value = nn.Parameter(flat[index].clone())
        self.index = index
        self.delta = None
        self.gate = None
        self.mode = "support"

    # ---- values ------------------------------------------------------------------------------
    def effective(self, *, deterministic: bool = False) -> torch.Tensor:
        """The dense ΔW (differentiable); gates are sampled in training unless ``deterministic``."""
        if self.mode == "support":
            assert self.value is not None and self.index is not None
            flat = self.value.new_zeros(self.numel).scatter(0, self.index, self.value)
            return flat.view(self.shape)
        assert self.delta is not None
        if self.gate is None:
            return self.delta
        z = self.gate.deterministic() if deterministic or not self.training else self.gate()
        return z * self.delta

    def bias(self) -> torch.Tensor | None:
        """The dense Δbias (``None`` when the base layer has no bias)."""
        return self.bias_delta

    def nonzero(self) -> int:
        """Entries of ΔW that are stored (support) or non-zero (l0 / l1), plus the Δbias entries."""
        bias = self.bias_delta.numel() if self.bias_delta is not None else 0
        if self.mode == "support":
            assert self.value is not None
            return int(self.value.numel()) + bias
        with torch.no_grad():
            return int(torch.count_nonzero(self.effective(deterministic=True))) + bias

    def density(self) -> float:
        """Fraction of ΔW entries that are non-zero (bias excluded)."""
        bias = self.bias_delta.numel() if self.bias_delta is not None else 0
        return (self.nonzero() - bias) / self.numel

    def ranking(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat ``(|ΔW|, gate opening probability)`` (deterministic, no gradient): what a fixed
        support is chosen by (:func:`automtl.delta.support.fix_support`)."""
        with torch.no_grad():
            eff = self.effective(deterministic=True).abs().reshape(-1).float()
            prob = self.gate.open_score().reshape(-1).float() if self.gate is not None else torch.zeros_like(eff)
        return eff, prob

    # ---- penalties -----------------------------------------------------------------------------
    def note_forward(self) -> None:
        """Record the weight penalty of a training forward (once per forward that used ΔW)."""
        if not (self.training and torch.is_grad_enabled()):
            return
        if self.mode == "l0" and self.l0_lambda > 0:
            assert self.gate is not None
            self._pending["delta_l0"] = self.l0_lambda * (self.gate.expected_density() - self.l0_target).clamp_min(0)
        elif self.mode == "l1" and self.l1_lambda > 0:
            assert self.delta is not None
            self._pending["delta_l1"] = self.l1_lambda * self.delta.abs().mean()

    def note_activation(self, delta_x: torch.Tensor) -> None:
        """Record ``act_l1 · mean|Δx|`` of a training forward (step 3)."""
        if self.act_l1 > 0 and self.training and torch.is_grad_enabled():
            self._pending["delta_act_l1"] = self.act_l1 * delta_x.abs().mean()

    def auxiliary_losses(self) -> dict[str, torch.Tensor]:
        """The penalties of the latest training forward (each returned once, then cleared; the
        last ones stay referenced, so a new penalty never reuses a reported one's ``id``)."""
        out, self._pending = self._pending, {}
        if out:
            self._reported = out
        return out

    def set_threshold(self, value: float) -> None:
        """Zero ``|Δx| < value`` at inference (0: keep every delta activation)."""
        self.threshold.fill_(check_threshold(value))

    # ---- state dict ------------------------------------------------------------------------------
    def adopt(self, state: Mapping[str, Any], prefix: str = "") -> None:
        """Switch to the layout of a saved state (sparse ``index``/``value``, or dense ``delta``
        with or without gates) so that it loads; sizes come from the saved tensors."""
        if f"{prefix}index" in state:
            index = state[f"{prefix}index"]
            if not isinstance(index, torch.Tensor) or index.dim() != 1:
                raise CheckpointError(f"'{prefix}index' must be a 1-d tensor of flat positions")
            if self.mode != "support" or self.index is None or self.index.numel() != index.numel():
                self.set_support(torch.arange(index.numel(), device=self.threshold.device))
        elif f"{prefix}gate.log_alpha" in state:
            self.set_mode("l0")
        elif f"{prefix}delta" in state:
            self.set_mode("l1")

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        self.adopt(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {**state, "_pending": {}, "_reported": {}}  # penalties hold autograd graphs

    def __deepcopy__(self, memo: dict[int, Any]) -> WeightDelta:
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for k, v in self.__dict__.items():
            clone.__dict__[k] = {} if k in ("_pending", "_reported") else copy.deepcopy(v, memo)
        return clone

    def extra_repr(self) -> str:
        return f"shape={self.shape}, mode={self.mode}, threshold={float(self.threshold):.3g}"
