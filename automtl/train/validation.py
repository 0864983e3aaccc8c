"""Validating a multi-task model at one stage: which forward a stage means, per-task metrics
with a finite check, Δm against a baseline, and the result shared with every process."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from automtl.errors import ConfigError, TrainingError
from automtl.train.distributed import DistInfo
from automtl.train.evaluation import run_metrics
from automtl.train.protocols import MultiTaskModel


def stage_kwargs(stage: str, hard: bool, *, model: MultiTaskModel, tau: float, policy: Any) -> dict[str, Any]:
    """The forward keywords of ``stage``: ``pre`` (every branch averaged), ``mtl`` (``hard``: the
    argmax policy of the logits; else the soft mixture at ``tau``) or ``fixed`` (``policy``)."""
    if stage == "pre":
        return {"stage": "pre"}
    if stage == "mtl":
        if hard:
            return {"stage": "fixed", "policy": model.argmax_policy()}
        return {"stage": "mtl", "tau": tau, "hard": False}
    if stage == "fixed":
        if policy is None:
            raise ConfigError("no policy: pass policy= or run post_train first", key="policy")
        return {"stage": "fixed", "policy": policy}
    raise ConfigError(f"unknown stage '{stage}'; use 'pre', 'mtl' or 'fixed'", key="stage")


def task_metrics(model: MultiTaskModel, tasks: Sequence[str], loaders: Mapping[str, Any],
                 metrics: Mapping[str, Any], kw: Mapping[str, Any], device: torch.device, *,
                 stage: str, iteration: int | None = None) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` in eval mode without gradients (the training mode comes back
    after); :class:`TrainingError` naming the metric, task and iteration when one is not finite."""
    result: dict[str, dict[str, float]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for task in tasks:
                fwd = lambda x, t=task: model(x, task=t, **kw)
                result[task] = run_metrics(fwd, loaders[task], metrics[task], device, task)
    finally:
        model.train(was_training)
    for task in tasks:
        for name, value in result[task].items():
            if not math.isfinite(value):
                at = f" at iteration {iteration}" if iteration is not None else ""
                raise TrainingError(f"metric '{name}' of task '{task}' is {value}{at} ({stage} validation)")
    return result


def share_result(result: dict[str, Any], dist: DistInfo) -> dict[str, Any]:
    """The main process's result on every process (only the main one validates)."""
    if not dist.enabled:
        return result
    import torch.distributed as tdist

    box = [result]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
