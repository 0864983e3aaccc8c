"""Running metrics over a validation loader and comparing with a single-task baseline (Δm)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

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


def load_baseline(baseline: str | os.PathLike | Mapping) -> dict[str, dict[str, float]]:
    """A single-task baseline ``{task: {metric: value}}`` from a dict or a JSON file."""
    if isinstance(baseline, Mapping):
        data = dict(baseline)
        path = "<dict>"
    else:
        path = str(baseline)
        if not Path(path).is_file():
            raise ConfigError("baseline file not found", key="baseline", path=path)
        data = json.loads(Path(path).read_text())
    data = data.get("metrics", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(v, Mapping) for v in data.values()):
        raise ConfigError("expected {task: {metric: value}}", key="baseline", path=path)
    return {t: {m: float(v) for m, v in d.items()} for t, d in data.items()}


def save_baseline(results: Mapping[str, Mapping[str, float]], path: str | os.PathLike) -> Path:
    """Write ``{task: {metric: value}}`` as a baseline JSON file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({t: dict(m) for t, m in results.items()}, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def delta_m_report(results: Mapping[str, Mapping[str, float]],
                   baseline: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Δm of ``results`` against ``baseline`` in the named variants of ``automtl.metrics``."""
    from automtl.metrics import delta_m_all

    return dict(delta_m_all(results, baseline))
