"""Base of every accumulating metric: sums kept as tensors, so reset/sync are uniform."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class Metric(ABC):
    """Accumulates statistics over batches; ``compute()`` turns them into named values.

    Subclasses declare ``higher_is_better`` (metric name -> bool) and ``primary`` (the one
    metric the Maninis/Vandenhende Δm uses), create their sums in ``_zeros()`` and fill them
    in ``update``. Every sum is a float64/int64 CPU tensor, so ``sync()`` can all-reduce
    them across DDP ranks and ``state_dict()`` can checkpoint them.

    Example:
        >>> from automtl.metrics import DepthMetric
        >>> m = DepthMetric()
        >>> m.update(torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 1.0))
        >>> m.compute()["abs_err"]
        1.0
    """

    higher_is_better: dict[str, bool] = {}
    primary: str = ""

    def __init__(self) -> None:
        self._acc: dict[str, torch.Tensor] = {}
        self.reset()

    @abstractmethod
    def _zeros(self) -> dict[str, torch.Tensor]:
        """Fresh accumulators."""

    @abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: ``pred`` is the raw head output, ``target`` the loader's target."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metric values over everything seen since the last ``reset()``."""

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._acc = self._zeros()

    def _add(self, name: str, value: torch.Tensor) -> None:
        acc = self._acc[name]
        self._acc[name] = acc + value.detach().to(device="cpu", dtype=acc.dtype)

    def sync(self) -> None:
        """Sum the accumulators over all ranks when torch.distributed is initialised."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            backend = dist.get_backend()
            for k, v in self._acc.items():
                t = v.cuda() if backend == "nccl" else v.clone()
                dist.all_reduce(t)
                self._acc[k] = t.cpu()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The accumulators (for checkpoints)."""
        return {k: v.clone() for k, v in self._acc.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore accumulators saved by ``state_dict``."""
        for k in self._zeros():
            self._acc[k] = state[k].clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(primary={self.primary!r})"


def match_size(pred: torch.Tensor, size: Sequence[int], *, mode: str = "bilinear") -> torch.Tensor:
    """Resize a ``[B,C,h,w]`` prediction to the target's ``(H, W)`` when they differ."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    if mode == "nearest":
        return F.interpolate(pred.float(), size=size, mode="nearest")
    return F.interpolate(pred.float(), size=size, mode=mode, align_corners=False)


def channel_norm(x: torch.Tensor, dim: int = 1, keepdim: bool = False) -> torch.Tensor:
    """L2 norm over ``dim`` as sqrt(sum(x²)): several times faster on CPU than ``Tensor.norm`` here."""
    return (x * x).sum(dim=dim, keepdim=keepdim).sqrt()


def l2_normalize(x: torch.Tensor, dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``x / ‖x‖`` over ``dim`` (same result as ``F.normalize``, faster on CPU)."""
    return x / channel_norm(x, dim, keepdim=True).clamp_min(eps)
