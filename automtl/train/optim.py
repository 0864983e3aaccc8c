"""The optimisers and learning-rate schedules of the trainer's phases.

Each AutoMTL phase builds its optimiser from a small spec, ``dict(type=…, **torch kwargs)``,
whose defaults are those of AutoMTL's released trainer (:data:`AUTOMTL_OPTIMIZERS`): Adam with
betas (0.5, 0.999) for pre- and post-training, SGD with momentum 0.9 for the network steps of
policy training and plain Adam for the policy logits. The learning rate and weight decay come
from the phase's own ``lr`` / ``weight_decay`` settings, so a spec names neither.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automtl.errors import ConfigError

__all__ = ["AUTOMTL_OPTIMIZERS", "OPTIMIZERS", "adam", "build_optimizer", "step_lr"]

#: optimiser classes a spec may name
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "SGD": torch.optim.SGD}

#: AutoMTL's optimiser of each phase (its Trainer: pre_train, alter_train_with_reg, post_train)
AUTOMTL_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "pre_train": {"type": "Adam", "betas": (0.5, 0.999)},
    "network": {"type": "SGD", "momentum": 0.9},
    "policy": {"type": "Adam"},
    "post_train": {"type": "Adam", "betas": (0.5, 0.999)},
}


def adam(params: Sequence[nn.Parameter], lr: float, weight_decay: float = 0.0,
         extra: Sequence[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """Adam over ``params``, plus a decay-free group for ``extra`` (learnt loss weights), so a
    weighting method's parameters move with the network they weight."""
    return build_optimizer(params, {"type": "Adam"}, lr=lr, weight_decay=weight_decay, extra=extra)


def build_optimizer(params: Sequence[nn.Parameter], spec: Mapping[str, Any], *, lr: float,
                    weight_decay: float = 0.0, extra: Sequence[nn.Parameter] = (),
                    key: str = "optimizer") -> torch.optim.Optimizer:
    """The optimiser ``spec`` names (``dict(type="SGD", momentum=0.9)``) over ``params``, plus a
    decay-free group for ``extra``; :class:`ConfigError` naming ``key`` for a bad spec."""
    if not isinstance(spec, Mapping):
        raise ConfigError("must be a dict such as dict(type='Adam', betas=(0.5, 0.999))", key=key, value=spec)
    kwargs = dict(spec)
    name = kwargs.pop("type", None)
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimiser; choose one of {sorted(OPTIMIZERS)}", key=f"{key}.type", value=name)
    for k in ("lr", "weight_decay", "params"):
        if k in kwargs:
            raise ConfigError(f"set '{k}' with the phase's own setting, not inside the optimiser spec",
                              key=f"{key}.{k}", value=kwargs[k])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    groups: list[dict[str, Any]] = [{"params": list(params)}]
    if extra:
        groups.append({"params": list(extra), "weight_decay": 0.0})
    try:
        return OPTIMIZERS[name](groups, lr=lr, weight_decay=weight_decay, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} refuses these arguments: {e}", key=key, value=dict(spec)) from None


def step_lr(opt: torch.optim.Optimizer, freq: int | None, rate: float, iters: int) -> Any:
    """Multiply the learning rate by ``rate`` every ``freq`` iterations (AutoMTL's
    ``decay_lr_freq``/``decay_lr_rate``); a constant rate when ``freq`` is not set."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=int(freq) if freq else max(iters, 1) + 1,
                                           gamma=rate if freq else 1.0)
