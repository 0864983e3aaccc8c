"""Loading a trained model's weights file for the commands that evaluate or sample from it."""
from __future__ import annotations

import os
from typing import Any

from torch import nn


def load_model_weights(model: nn.Module, path: str | os.PathLike[str], *,
                       map_location: Any = "cpu") -> None:
    """Load a phase weights file or checkpoint (``{"model": state}`` or a plain state dict)
    into ``model``; mismatching keys or shapes raise :class:`CheckpointError` naming them."""
    from automtl.io import safe_load
    from automtl.train.resume import load_model_state

    ckpt = safe_load(path, map_location=map_location)
    state = ckpt.get("model", ckpt.get("state_dict", ckpt))
    load_model_state(model, state, path)
