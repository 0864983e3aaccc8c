"""State-dict loading that names the tensors that do not fit instead of a bare RuntimeError."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from automtl.errors import CheckpointError

_SHOWN = 12


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any], *, strict: bool = True) -> None:
    """Raise :class:`CheckpointError` listing tensors of another shape (and, when ``strict``,
    missing or unexpected keys)."""
    own = model.state_dict()
    differ = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state_dict.items()
              if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    problems = []
    if differ:
        problems.append(f"{len(differ)} tensor(s) differ in shape (is it a subnet of another "
                        f"size?): " + "; ".join(differ[:_SHOWN]) + (" …" if len(differ) > _SHOWN else ""))
    if strict:
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing:
            problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing[:_SHOWN]))
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:_SHOWN]))
    if problems:
        raise CheckpointError(f"state dict does not fit {type(model).__name__}: " + " | ".join(problems))


class CheckedLoad(nn.Module):
    """Base of modules whose ``load_state_dict`` raises :class:`CheckpointError`."""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        check_state_dict(self, state_dict, strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
