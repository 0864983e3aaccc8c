"""The three training steps of delta sharing as trainer phases (:mod:`automtl.delta`).

1. ``delta_train``: learn ``ΔW = z ⊙ δ`` with hard-concrete L0 gates (or an L1 penalty) under a
   policy whose sub-tasks take ``delta`` (the base task trains on its own loss);
2. ``delta_support_train``: fix the support of each sub-task's ΔW at the target density and
   fine-tune only those entries (stored sparse from here on);
3. ``delta_act_train``: fine-tune with an L1 penalty on the delta activations; the inference
   threshold (default 0.15, per layer if given) zeroes ``|Δx|`` below it.

Every phase runs the fixed policy (stage ``"fixed"``), checkpoints and resumes like the others;
the penalties reach the loss through the modules' ``auxiliary_losses()``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automtl.delta import HardConcreteGate, WeightDelta, check_density, check_threshold, fix_support
from automtl.errors import ConfigError, ModelError
from automtl.train.optim import adam, step_lr
from automtl.train.steps import loss_lambdas

if TYPE_CHECKING:
    from automtl.train.trainer import Trainer

DELTA_PHASES = ("delta_train", "delta_support_train", "delta_act_train")


def delta_policy(trainer: Trainer, reload: Any) -> Any:
    """The delta policy of a phase: ``reload`` (a Policy or its JSON path), else the trainer's
    current one if it uses deltas, else every sub-task as a delta on the model's base."""
    from automtl.supernet import Policy

    model: Any = trainer.model
    if reload is not None:
        policy = trainer._resolve_policy(reload)
    elif trainer.policy is not None and getattr(trainer.policy, "base", None) is not None:
        policy = trainer.policy
    else:
        base = getattr(model, "delta_base", None)
        if base is None:
            raise ModelError("the model has no deltas: call model.add_deltas(base) first")
        policy = Policy.delta(model, base)
    if policy.base is None:
        raise ConfigError("a delta phase needs a policy that uses 'delta' (with a base task)", key="reload")
    return policy


def deltas_by_task(model: Any, policy: Any) -> dict[str, list[WeightDelta]]:
    """``{task: its weight deltas}`` under ``policy`` (tasks without deltas left out)."""
    out: dict[str, list[WeightDelta]] = {}
    for layer in policy.layers:
        for t, c in policy[layer].items():
            if c == "delta":
                out.setdefault(t, []).append(model.weight_delta(layer, t))
    return out


def _run_phase(trainer: Trainer, name: str, iters: int, lr: float, policy: Any,
               prepare: Callable[[list[WeightDelta]], None], *, gate_lr: float | None,
               loss_lambda: Mapping[str, float] | None, save_path: str | os.PathLike[str] | None,
               decay_lr_freq: int | None, decay_lr_rate: float, weight_decay: float, resume: bool) -> Path:
    model: Any = trainer.model
    trainer.policy = policy
    model.set_policy(policy)
    if trainer.dist.is_main:
        trainer.work_dir.mkdir(parents=True, exist_ok=True)
        policy.save(trainer.work_dir / "delta_policy.json")
    prepare(model.weight_deltas(policy))
    lambdas = loss_lambdas(loss_lambda, trainer.tasks)
    stepper = trainer._stepper()
    state = trainer._phase(name, iters)
    gates = {id(p) for m in model.modules() if isinstance(m, HardConcreteGate) for p in m.parameters()}
    params = stepper.weight_params()
    opt = adam([p for p in params if id(p) not in gates or gate_lr is None], lr, weight_decay,
               stepper.weighting_params())
    if gate_lr is not None and gates:
        opt.add_param_group({"params": [p for p in params if id(p) in gates], "lr": gate_lr, "weight_decay": 0.0})
    state.optimizers["network"] = opt
    state.schedulers["network"] = step_lr(opt, decay_lr_freq, decay_lr_rate, iters)
    state.streams["train"] = trainer._streams("train")

    def step(it: int) -> dict[str, float]:
        return stepper.weight_step(state, "train", "network", lambdas, dict(stage="fixed", policy=policy), it)

    return trainer._run(state, step, save_path, resume, eval_stage="fixed", lr=lr)


def delta_train(trainer: Trainer, iters: int, lr: float = 1e-3, *, reload: Any = None, mask: str = "l0",
                l0_lambda: float = 0.5, l0_target: float = 0.0, l1_lambda: float = 0.01, gate_lr: float = 0.01,
                base_grad: bool = False,
                init_log_alpha: float | None = None, loss_lambda: Mapping[str, float] | None = None,
                save_path: str | os.PathLike[str] | None = None, weights: str | os.PathLike[str] | None = None,
                decay_lr_freq: int | None = None, decay_lr_rate: float = 0.5, weight_decay: float = 0.0,
                resume: bool = False) -> Path:
    """Step 1: learn the weight deltas (``mask="l0"``: hard-concrete gates, penalty
    ``l0_lambda · max(E[density] − l0_target, 0)`` per delta; ``"l1"``: ``l1_lambda · mean|δ|``);
    gates learn at ``gate_lr``. ``base_grad``: let the sub-tasks' losses move the base weights too."""
    if mask not in ("l0", "l1"):
        raise ConfigError("the delta mask is 'l0' (hard-concrete gates) or 'l1'", key="mask", value=mask)
    if weights is not None:
        trainer.load_weights(weights)
    policy = delta_policy(trainer, reload)

    def prepare(deltas: list[WeightDelta]) -> None:
        for d in deltas:
            if init_log_alpha is not None:
                d.init_log_alpha = float(init_log_alpha)
            d.set_mode(mask)
            d.l0_lambda, d.l1_lambda, d.act_l1, d.base_grad = float(l0_lambda), float(l1_lambda), 0.0, base_grad
            d.l0_target = float(l0_target)

    return _run_phase(trainer, "delta_train", iters, lr, policy, prepare, gate_lr=gate_lr if mask == "l0" else None,
                      loss_lambda=loss_lambda, save_path=save_path, decay_lr_freq=decay_lr_freq,
                      decay_lr_rate=decay_lr_rate, weight_decay=weight_decay, resume=resume)


def delta_support_train(trainer: Trainer, iters: int, lr: float = 1e-3, *, density: float = 0.1,
                        reload: Any = None, base_grad: bool = False, loss_lambda: Mapping[str, float] | None = None,
                        save_path: str | os.PathLike[str] | None = None, decay_lr_freq: int | None = None,
                        decay_lr_rate: float = 0.5, weight_decay: float = 0.0, resume: bool = False) -> Path:
    """Step 2: keep the top ``density`` fraction of each sub-task's ΔW entries (one top-k over
    all its layers, so every sub-task's density is the target) and fine-tune only them."""
    density = check_density(density)
    policy = delta_policy(trainer, reload)

    def prepare(deltas: list[WeightDelta]) -> None:
        for task, own in deltas_by_task(trainer.model, policy).items():
            reached = fix_support(own, density)
            trainer.monitor.log(f"delta_support_train: support of '{task}' fixed at density {reached:.4f} "
                                f"({sum(d.nonzero() for d in own)} stored delta entries)")
        for d in deltas:
            d.act_l1, d.base_grad = 0.0, base_grad

    return _run_phase(trainer, "delta_support_train", iters, lr, policy, prepare, gate_lr=None,
                      loss_lambda=loss_lambda, save_path=save_path, decay_lr_freq=decay_lr_freq,
                      decay_lr_rate=decay_lr_rate, weight_decay=weight_decay, resume=resume)


def set_thresholds(model: Any, policy: Any, threshold: float, thresholds: Mapping[str, float] | None = None) -> None:
    """Inference thresholds of the policy's deltas: ``thresholds[layer]`` where given, else ``threshold``."""
    default = check_threshold(threshold)
    per_layer = {k: check_threshold(v, key=f"thresholds.{k}") for k, v in (thresholds or {}).items()}
    unknown = sorted(set(per_layer) - set(policy.layers))
    if unknown:
        raise ConfigError(f"no such policy layer; layers: {list(policy.layers)[:6]} …", key=f"thresholds.{unknown[0]}")
    for layer in policy.layers:
        for t, c in policy[layer].items():
            if c == "delta":
                model.weight_delta(layer, t).set_threshold(per_layer.get(layer, default))


def delta_act_train(trainer: Trainer, iters: int, lr: float = 1e-4, *, act_l1: float = 0.05,
                    threshold: float = 0.15, thresholds: Mapping[str, float] | None = None, reload: Any = None,
                    base_grad: bool = False, loss_lambda: Mapping[str, float] | None = None,
                    save_path: str | os.PathLike[str] | None = None, decay_lr_freq: int | None = None,
                    decay_lr_rate: float = 0.5, weight_decay: float = 0.0, resume: bool = False) -> Path:
    """Step 3: fine-tune with ``act_l1 · mean|x_task − x_base|`` at every delta layer; at
    inference ``|Δx|`` below the layer's threshold is zeroed (``thresholds``: per layer name)."""
    if isinstance(act_l1, bool) or not isinstance(act_l1, (int, float)) or act_l1 < 0:
        raise ConfigError("must be a number >= 0", key="act_l1", value=act_l1)
    policy = delta_policy(trainer, reload)
    set_thresholds(trainer.model, policy, threshold, thresholds)

    def prepare(deltas: list[WeightDelta]) -> None:
        for d in deltas:
            d.act_l1, d.base_grad = float(act_l1), base_grad

    return _run_phase(trainer, "delta_act_train", iters, lr, policy, prepare, gate_lr=None,
                      loss_lambda=loss_lambda, save_path=save_path, decay_lr_freq=decay_lr_freq,
                      decay_lr_rate=decay_lr_rate, weight_decay=weight_decay, resume=resume)

