"""What the trainer needs of the objects it is given: the multi-task model and the loss weighting.

Checked once, when the :class:`~automtl.train.Trainer` is built, so the training code calls
these members directly instead of probing objects for them.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from automtl.errors import ConfigError, ModelError
from automtl.supernet.policy import PolicyTarget


@runtime_checkable
class MultiTaskModel(PolicyTarget, Protocol):
    """The ``MTLModel`` contract: per-task heads, weight/policy parameters, policy helpers (and
    the ``nn.Module`` members training uses)."""

    heads: Mapping[str, nn.Module]
    training: bool

    def __call__(self, x: Any, *, task: str, **kwargs: Any) -> Any: ...

    def weight_parameters(self) -> Iterator[nn.Parameter]: ...

    def policy_parameters(self) -> Iterator[nn.Parameter]: ...

    def policy_regularizer(self) -> torch.Tensor: ...

    def argmax_policy(self) -> Any: ...

    def set_policy(self, policy: Any) -> None: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, device: torch.device) -> Any: ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


@runtime_checkable
class LossWeighting(Protocol):
    """A loss-weighting method (``automtl.train.weighting.Weighting``): combines task losses
    into gradients and carries learnable weights and resumable state."""

    name: str

    def backward(self, losses: Mapping[str, torch.Tensor],
                 shared_parameters: Sequence[nn.Parameter] | None = None) -> dict[str, float]: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def to(self, device: torch.device) -> Any: ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


_MODEL_MEMBERS = ("heads", "tasks", "policy_layers", "weight_parameters", "policy_parameters", "policy_regularizer",
                  "argmax_policy", "set_policy")
_WEIGHTING_MEMBERS = ("name", "backward", "parameters", "to", "state_dict", "load_state_dict")


def check_model(model: Any) -> MultiTaskModel:
    """``model`` if it follows :class:`MultiTaskModel`; else :class:`ModelError` naming what it lacks."""
    if not isinstance(model, MultiTaskModel):
        lacks = [m for m in _MODEL_MEMBERS if not hasattr(model, m)]
        raise ModelError(f"{type(model).__name__} is not a multi-task model: it lacks {lacks} "
                         "(see automtl.supernet.MTLModel)")
    return model


def build_loss_weighting(weighting: Any, tasks: Sequence[str]) -> LossWeighting | None:
    """``None`` for plain fixed λ (``"fixed"``/``None``), else a :class:`LossWeighting` built by
    name/config from ``automtl.train.weighting`` or the instance given."""
    if weighting is None or weighting == "fixed":
        return None
    if isinstance(weighting, (str, Mapping)):
        from automtl.train.weighting import build_weighting

        weighting = build_weighting(weighting, tasks)
    if not isinstance(weighting, LossWeighting):
        lacks = [m for m in _WEIGHTING_MEMBERS if not hasattr(weighting, m)]
        raise ConfigError(f"{type(weighting).__name__} lacks {lacks}; subclass "
                          "automtl.train.weighting.Weighting", key="weighting")
    return weighting
