"""Running metrics over a validation loader and comparing with a single-task baseline (Δm)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from automtl.errors import ConfigError
from automtl.train.batches import move_to, split_batch


def run_metrics(forward: Callable[[Any], Any], loader: Any, metric: Any, device: torch.device,
                task: str) -> dict[str, float]:
    """Reset ``metric``, feed it every batch of ``loader`` through ``forward``, return ``compute()``."""
    metric.reset()
    for batch in loader:
        x, y = split_batch(batch, task)
        out = forward(move_to(x, device))
        metric.update(out.detach() if isinstance(out, torch.Tensor) else out, move_to(y, device))
    values = metric.compute()
    if not isinstance(values, Mapping):
        values = {getattr(metric, "name", "value"): values}
    return {str(k): float(v) for k, v in values.items()}


def as_baseline(baseline: Any) -> Any:
    """A :class:`automtl.metrics.Baseline` from a file path, a ``Baseline`` or ``{task: {metric: value}}``."""
    from automtl.metrics import Baseline, default_directions, load_baseline

    if isinstance(baseline, Baseline):
        return baseline
    if isinstance(baseline, Mapping):
        data = {t: {m: float(v) for m, v in d.items()} for t, d in baseline.items()}
        hib, primary = default_directions(data)
        return Baseline(data, hib, primary)
    if isinstance(baseline, (str, os.PathLike)):
        return load_baseline(baseline)
    raise ConfigError(f"a baseline must be a path, a Baseline or a dict, not {type(baseline).__name__}",
                      key="baseline")
