"""The delta-sharing config runner behind ``python -m automtl train`` (a config with a ``delta``
section): build data and model, give the sub-tasks weight deltas on the base task, run the three
steps (L0 deltas → fixed support → sparse delta activations) and evaluate.

A config (``configs/automtl/synthetic_delta_*.py``)::

    tasks = ["segment_semantic", "depth_zbuffer", "normal"]
    data = dict(type="synthetic", size=32, n_train=256, n_val=64, batch_size=16)
    model = dict(backbone=dict(type="TinyResNet", widths=(16, 32, 64)), input_shape=(1, 3, 32, 32))
    delta = dict(base="segment_semantic", density=0.1, threshold=0.15)
    delta_train = dict(iters=200, lr=1e-3, l0_lambda=0.5)
    delta_support_train = dict(iters=100, lr=1e-3)
    delta_act_train = dict(iters=100, lr=1e-4, act_l1=0.05)

The model is an ``MTLModel`` (deltas at its policy layers) or separate task networks such as
``model = dict(type="ViTMVTNetworks", space=dict(...))`` (deltas on every block's attention and
MLP projections; ``configs/automtl/synthetic_delta_vit_mvt.py``).

Writes ``config.py``, ``policy.json`` (the delta policy), phase weights, checkpoints, logs and
``results.json`` (metrics, parameters, FLOPs with the skipped delta computation, densities).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automtl.config import load_config, validate
from automtl.train.distributed import lock_main_work_dir
from automtl.train.fingerprint import AUTOMTL_MAY_CHANGE, Fingerprint
from automtl.train.settings import (
    DeltaActSettings,
    DeltaSettings,
    DeltaSupportSettings,
    DeltaTrainSettings,
    TrainerSettings,
)

SECTIONS = ("tasks", "data", "model", "trainer", "delta", "delta_train", "delta_support_train", "delta_act_train")
#: the sections of consecutive steps: a step's checkpoint leaves out the settings of later ones
STAGES = ("delta_train", "delta_support_train", "delta_act_train")


@dataclass
class DeltaPlan:
    """A checked delta-sharing config: every section validated, defaults filled."""

    tasks: list[str]
    seed: int
    data: dict[str, Any]
    model: dict[str, Any]
    trainer: TrainerSettings
    delta: DeltaSettings
    delta_train: DeltaTrainSettings | None
    delta_support_train: DeltaSupportSettings | None
    delta_act_train: DeltaActSettings | None
    raw: dict[str, Any]


def check_delta_config(cfg: Mapping[str, Any], *, path: str | None = None) -> DeltaPlan:
    """Validate every section of a delta config (:class:`ConfigError` naming the dotted key)."""
    from automtl.cli.run_automtl import check_common
    from automtl.errors import ConfigError

    raw, tasks, seed = check_common(cfg, SECTIONS, required=("tasks", "model", "delta"), path=path)
    delta = validate(DeltaSettings, raw["delta"], key="delta", path=path)
    if delta.base not in tasks:
        raise ConfigError(f"the base task must be one of the tasks {tasks}", key="delta.base", path=path,
                          value=delta.base)
    if len(tasks) < 2:
        raise ConfigError("delta sharing needs a base task and at least one other task", key="tasks",
                          path=path, value=tasks)

    def section(name: str, schema: Any) -> Any:
        return validate(schema, raw[name], key=name, path=path) if name in raw else None

    return DeltaPlan(
        tasks=tasks, seed=seed, data=dict(raw.get("data") or {}), model=dict(raw["model"]),
        trainer=validate(TrainerSettings, raw.get("trainer"), key="trainer", path=path), delta=delta,
        delta_train=section("delta_train", DeltaTrainSettings),
        delta_support_train=section("delta_support_train", DeltaSupportSettings),
        delta_act_train=section("delta_act_train", DeltaActSettings), raw=raw)


def fingerprint(plan: DeltaPlan, allow_changed: Sequence[str] = ()) -> Fingerprint:
    """The run-defining settings of ``plan`` (a step's checkpoint leaves out later steps)."""
    sections = {"tasks": plan.tasks, "seed": plan.seed, "data": plan.data, "model": plan.model,
                "custom_imports": plan.raw.get("custom_imports"), "trainer": plan.trainer, "delta": plan.delta,
                **{name: getattr(plan, name) for name in STAGES}}
    return Fingerprint.of(sections, may_change=(*AUTOMTL_MAY_CHANGE, *allow_changed), stages=STAGES)


def run_delta_config(cfg: Mapping[str, Any] | str | os.PathLike[str], *, work_dir: str | os.PathLike[str],
                     seed: int | None = None, resume: bool = False, device: str | None = None,
                     cfg_options: Any = None, allow_changed: Sequence[str] = ()) -> dict[str, Any]:
    """Run the steps a delta config names (holding the work dir's lock); see the module docstring."""
    if isinstance(cfg, (str, os.PathLike)):
        path: str | None = str(cfg)
        raw: Mapping[str, Any] = load_config(cfg, cfg_options)
    else:
        path, raw = None, cfg
    plan = check_delta_config(raw, path=path)
    if seed is not None:
        plan.seed = seed
    with lock_main_work_dir(work_dir, purpose="train"):
        return run_delta_plan(plan, Path(work_dir), resume=resume, device=device,
                              fingerprint=fingerprint(plan, allow_changed))


def build_delta_model(plan: DeltaPlan) -> tuple[Any, Any]:
    """The config's model with the sub-tasks' deltas added, and the delta policy: an ``MTLModel``
    (``add_deltas``), or separate task networks (a model with ``task_model(task)``, e.g.
    ``ViTMVTNetworks``) as a :class:`~automtl.supernet.delta_model.DeltaModel` whose deltas sit
    on the base network's ``delta.layers`` (default: every block's attention and MLP projections)."""
    from automtl.errors import ConfigError
    from automtl.supernet import Policy
    from automtl.supernet.registration import build_model

    d = plan.delta
    model: Any = build_model(plan.model, plan.tasks)
    kwargs = dict(mode=d.mask, init_log_alpha=d.init_log_alpha)
    if hasattr(model, "add_deltas"):
        model.add_deltas(d.base, layers=d.layers, **kwargs)
    elif hasattr(model, "task_model"):
        model = _networks_with_deltas(model, d.base, d.layers, kwargs)
    else:
        raise ConfigError(f"delta sharing needs an MTLModel or separate task networks (task_model(task)), "
                          f"not {type(model).__name__}", key="model.type")
    policy = Policy.load(d.policy, model=model) if d.policy else Policy.delta(model, d.base)
    return model, policy


def _networks_with_deltas(model: Any, base: str, layers: list[str] | None, kwargs: dict[str, Any]) -> Any:
    """A ``DeltaModel`` of a multi-task model's task networks, deltas on ``layers`` (names in the
    base network; :class:`ConfigError` at ``delta.layers`` naming one that cannot carry a delta)."""
    from automtl.delta import block_projections, supports_delta
    from automtl.errors import ConfigError
    from automtl.supernet.delta_model import DeltaModel

    if layers is None:
        return DeltaModel.from_multitask(model, base, select=block_projections, **kwargs)
    known = {n for n, m in model.task_model(base).named_modules() if n and supports_delta(m)}
    for i, name in enumerate(layers):
        if name not in known:
            raise ConfigError(f"no linear / zero-padded conv layer of that name in the base network; "
                              f"e.g. {sorted(known)[:4]}", key=f"delta.layers.{i}", value=name)
    wanted = set(layers)
    return DeltaModel.from_multitask(model, base, select=lambda n, _: n in wanted, **kwargs)


def run_delta_plan(plan: DeltaPlan, work: Path, *, resume: bool = False, device: str | None = None,
                   fingerprint: Fingerprint | None = None) -> dict[str, Any]:
    """Build data, model and trainer of a checked delta config, run its steps, evaluate."""
    from automtl.cli.run_automtl import start_run
    from automtl.delta import delta_density
    from automtl.io import atomic_write_text
    from automtl.train.delta_phases import set_thresholds

    built: dict[str, Any] = {}

    def build() -> Any:
        built["model"], built["policy"] = build_delta_model(plan)
        return built["model"]

    model, trainer, val, metrics = start_run(plan, work, build, device=device, fingerprint=fingerprint)
    policy = built["policy"]
    d = plan.delta
    try:
        if trainer.dist.is_main:
            policy.save(work / "policy.json")
        if plan.delta_train is not None:
            step1 = plan.delta_train.kwargs()
            step1["l0_target"] = d.density if step1["l0_target"] is None else step1["l0_target"]
            trainer.delta_train(**step1, reload=policy, mask=d.mask, resume=resume)
        if plan.delta_support_train is not None:
            trainer.delta_support_train(**plan.delta_support_train.kwargs(), reload=policy, density=d.density,
                                        resume=resume)
        if plan.delta_act_train is not None:
            trainer.delta_act_train(**plan.delta_act_train.kwargs(), reload=policy, threshold=d.threshold,
                                    thresholds=d.thresholds, resume=resume)
        set_thresholds(model, policy, d.threshold, d.thresholds)
        trainer.policy = policy
        model.set_policy(policy)
        out: dict[str, Any] = {"tasks": plan.tasks, "seed": plan.seed, "base": d.base,
                               "results": trainer.validate("fixed", policy=policy),
                               "params": model.count_params(policy),
                               "delta_density": delta_density(model.weight_deltas(policy)),
                               "flops": _flops(model, policy, val, trainer.device),
                               "policy": str(work / "policy.json")}
    finally:
        trainer.close()
    if trainer.dist.is_main:
        atomic_write_text(work / "results.json", json.dumps(out, indent=2, default=str))
    return out


def _flops(model: Any, policy: Any, val: Mapping[str, Any], device: Any) -> dict[str, Any]:
    """The FLOP report of ``policy`` on the first validation batch of the base task."""
    from automtl.supernet.flops import flop_report
    from automtl.train.batches import move_to, split_batch

    base = policy.base
    x, _ = split_batch(next(iter(val[base])), base)
    return flop_report(model, move_to(x, device), policy).as_dict()
