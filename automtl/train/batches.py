"""Reading a loader's batch: ``(input, target)`` tuples or dicts keyed by ``image``/task."""
from __future__ import annotations

from typing import Any

import torch

from automtl.errors import ConfigError

_INPUT_KEYS = ("image", "input", "img", "x")


def split_batch(batch: Any, task: str) -> tuple[Any, Any]:
    """``(input, target)`` of one batch for ``task``.

    Accepts ``(input, target, ...)`` sequences and dicts holding the input under ``image``
    (or ``input``/``img``/``x``) and the target under the task name (or ``target``/``label``).
    """
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        x = next((batch[k] for k in _INPUT_KEYS if k in batch), None)
        for key in (task, "target", "label"):
            if key in batch and x is not None:
                return x, batch[key]
        raise ConfigError(f"a batch dict with keys {sorted(batch)} has no input ({_INPUT_KEYS}) or no "
                          f"target ('{task}', 'target', 'label')", key=task)
    raise ConfigError(f"a batch of type {type(batch).__name__} is neither (input, target) nor a dict",
                      key=task)


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: move_to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to(v, device) for v in value)
    return value
