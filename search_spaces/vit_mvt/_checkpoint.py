"""State-dict loading that names the tensors that do not fit instead of a bare RuntimeError.

The messages read as those of :func:`automtl.train.resume.check_model_state` (``<where>: does
not fit the model; missing keys [...], unexpected keys [...], shapes differ: '<key>' is (...)
in the checkpoint but (...) in the model``), so a ViT-MVT weights file and a training
checkpoint that do not fit are reported alike.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from automtl.errors import CheckpointError

_SHOWN = 8


def _few(names: Iterable[str]) -> str:
    """The first :data:`_SHOWN` names and how many more there are."""
    names = list(names)
    return str(names[:_SHOWN]) + (f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a tensor-like value, ``None`` for anything else."""
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def shape_problems(own: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """One line per key present in both whose shapes differ."""
    return [f"'{k}' is {_shape(saved[k])} in the checkpoint but {_shape(v)} in the model"
            for k, v in own.items()
            if k in saved and None not in (_shape(v), _shape(saved[k])) and _shape(v) != _shape(saved[k])]


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any], *, strict: bool = True,
                     where: Any = None) -> None:
    """Raise :class:`CheckpointError` naming tensors of another shape and, when ``strict``, the
    missing and unexpected keys; ``where`` (default: the model's class) starts the message."""
    own = model.state_dict()
    problems = []
    if strict:
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if missing:
            problems.append(f"missing keys {_few(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_few(unexpected)}")
    shapes = shape_problems(own, state_dict)
    if shapes:
        problems.append("shapes differ (is it a subnet of another size?): " + "; ".join(shapes[:_SHOWN])
                        + (" …" if len(shapes) > _SHOWN else ""))
    if problems:
        label = where if where is not None else f"state dict for {type(model).__name__}"
        raise CheckpointError(f"{label}: does not fit the model; " + ", ".join(problems))


class CheckedLoad(nn.Module):
    """Base of modules whose ``load_state_dict`` raises :class:`CheckpointError`."""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Check ``state_dict`` with :func:`check_state_dict`, then load it as torch does."""
        check_state_dict(self, state_dict, strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
