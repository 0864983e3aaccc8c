"""The optimisers and learning-rate schedules of the trainer's phases."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def adam(params: Sequence[nn.Parameter], lr: float, weight_decay: float = 0.0,
         extra: Sequence[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """Adam over ``params``, plus a decay-free group for ``extra`` (learnt loss weights), so a
    weighting method's parameters move with the network they weight."""
    groups: list[dict[str, Any]] = [{"params": list(params)}]
    if extra:
        groups.append({"params": list(extra), "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def step_lr(opt: torch.optim.Optimizer, freq: int | None, rate: float, iters: int) -> Any:
    """Multiply the learning rate by ``rate`` every ``freq`` iterations (AutoMTL's
    ``decay_lr_freq``/``decay_lr_rate``); a constant rate when ``freq`` is not set."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=int(freq) if freq else max(iters, 1) + 1,
                                           gamma=rate if freq else 1.0)
