"""Hard-concrete L0 gates (Louizos et al.), as Diff-Pruning uses them for sparse weight deltas.

A gate holds one logit per element and one per tensor. Training draws each gate from the
stretched, clipped concrete distribution on ``(l, r) = (-1.5, 1.5)``; evaluation uses its
deterministic value. ``expected_density()`` is the differentiable expected fraction of non-zero
gates, the (normalised) expected-L0 penalty.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from automtl.errors import ConfigError

STRETCH: tuple[float, float] = (-1.5, 1.5)
BETA = 2.0 / 3.0
_EPS = 1e-6


class HardConcreteGate(nn.Module):
    """Per-element × per-tensor hard-concrete gates ``z = z_element ⊙ z_tensor`` for one tensor.

    Args:
        shape: shape of the gated tensor.
        init_log_alpha: initial logit of every gate (2.0: about 88 % of the gates open).
        beta: temperature of the concrete distribution.
        stretch: the interval ``(l, r)`` the concrete sample is stretched to before clipping.
    """

    def __init__(self, shape: Sequence[int], *, init_log_alpha: float = 2.0, beta: float = BETA,
                 stretch: tuple[float, float] = STRETCH) -> None:
        super().__init__()
        low, high = (float(v) for v in stretch)
        if not (low < 0.0 and high > 1.0):
            raise ConfigError("the stretch interval (l, r) needs l < 0 and r > 1", key="stretch",
                              value=stretch)
        if not beta > 0:
            raise ConfigError("the temperature must be > 0", key="beta", value=beta)
        self.low, self.high, self.beta = low, high, float(beta)
        self.log_alpha = nn.Parameter(torch.full(tuple(shape), float(init_log_alpha)))
        self.log_alpha_tensor = nn.Parameter(torch.tensor(float(init_log_alpha)))

    def _open_prob(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits - self.beta * math.log(-self.low / self.high))

    def expected_density(self) -> torch.Tensor:
        """E[fraction of non-zero gates] = mean P(z_element > 0) · P(z_tensor > 0)."""
        return self._open_prob(self.log_alpha).mean() * self._open_prob(self.log_alpha_tensor)

    def _stretch(self, s: torch.Tensor) -> torch.Tensor:
        return (s * (self.high - self.low) + self.low).clamp(0.0, 1.0)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        u = torch.rand_like(logits).clamp(_EPS, 1 - _EPS)
        return self._stretch(torch.sigmoid((u.log() - (-u).log1p() + logits) / self.beta))

    def deterministic(self) -> torch.Tensor:
        """The gate values used at inference: ``clip(σ(log α)(r − l) + l, 0, 1)`` per element × tensor."""
        return self._stretch(torch.sigmoid(self.log_alpha)) * self._stretch(torch.sigmoid(self.log_alpha_tensor))

    def forward(self) -> torch.Tensor:
        """Sampled gates in training mode, deterministic ones in evaluation mode."""
        if not self.training:
            return self.deterministic()
        return self._sample(self.log_alpha) * self._sample(self.log_alpha_tensor)

    def open_score(self) -> torch.Tensor:
        """Per-element probability that the gate is open (for ranking, no gradient)."""
        with torch.no_grad():
            return self._open_prob(self.log_alpha) * self._open_prob(self.log_alpha_tensor)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.log_alpha.shape)}, stretch=({self.low}, {self.high}), beta={self.beta:.3g}"
