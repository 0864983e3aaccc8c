"""State-dict loading that names the tensors that do not fit instead of a bare RuntimeError.

The messages come from the one checker, :func:`automtl.io.check_state_dict` (``<where>: does
not fit the model; missing keys [...], unexpected keys [...], shapes differ: '<key>' is (...)
in the checkpoint but (...) in the model``), so a ViT-MVT weights file and a training
checkpoint that do not fit are reported alike.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from automtl.io import check_state_dict as check_weights


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any], *, strict: bool = True,
                     where: Any = None) -> None:
    """Raise :class:`CheckpointError` naming tensors of another shape and, when ``strict``, the
    missing and unexpected keys; ``where`` (default: the model's class) starts the message."""
    label = where if where is not None else f"state dict for {type(model).__name__}"
    check_weights(model.state_dict(), state_dict, label, strict=strict,
                  hint=" (is it a subnet of another size?)")


class CheckedLoad(nn.Module):
    """Base of modules whose ``load_state_dict`` raises :class:`CheckpointError`."""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Check ``state_dict`` with :func:`check_state_dict`, then load it as torch does."""
        check_state_dict(self, state_dict, strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
