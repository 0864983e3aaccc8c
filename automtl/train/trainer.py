"""The AutoMTL three-phase trainer: pre-train, alternating policy-train, post-train, validate.

Keyword names follow AutoMTL's README (``iters``, ``lr``, ``policy_network_iters``,
``policy_lr``, ``network_lr``, ``loss_lambda``, ``save_path``, ``reload``, ``decay_lr_freq``,
``decay_lr_rate``) so its users can switch. Every phase checkpoints atomically every
``checkpoint_iters`` iterations and resumes to the same weights as an uninterrupted run.

:class:`Trainer` is the façade that wires the parts: :mod:`.phases` (the phase loop),
:mod:`.steps` (one optimisation step), :mod:`.resume` (checkpoints), :mod:`.streams` (data
order), :mod:`.optim` (optimisers), :mod:`.validation` and :mod:`.monitor` (logs).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from automtl.errors import CheckpointError, ConfigError, UnknownTaskError
from automtl.io import atomic_save, safe_load
from automtl.train.checkpoint import seed_everything
from automtl.train.distributed import broadcast_module, init_distributed
from automtl.train.evaluation import as_baseline
from automtl.train.fingerprint import Fingerprint
from automtl.train.monitor import RunMonitor
from automtl.train.optim import AUTOMTL_OPTIMIZERS, build_optimizer, step_lr
from automtl.train.phases import PHASES, Cadence, PhaseLoop, PhaseState
from automtl.train.protocols import build_loss_weighting, check_model
from automtl.train.resume import Checkpointer, load_model_state
from automtl.train.steps import StepRunner, frozen, loss_lambdas
from automtl.train.streams import TaskStream, phase_streams, weight_policy_split
from automtl.train.validation import share_result, stage_kwargs, task_metrics

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["PHASES", "Trainer"]


class Trainer:
    """Trains an ``MTLModel`` through AutoMTL's three phases and evaluates it.

    Example::

        trainer = Trainer(model, train_loaders, val_loaders, criteria, metrics, work_dir="work_dirs/x")
        trainer.pre_train(iters=200, lr=1e-3)
        trainer.alter_train_with_reg(iters=300, policy_network_iters=(20, 40), network_lr=1e-3,
                                     loss_lambda={"segment_semantic": 1, "depth_zbuffer": 1, "policy": 5e-4})
        policy = model.sample_policy(seed=0)
        trainer.post_train(iters=300, lr=1e-3, reload=policy)
        print(trainer.validate("fixed"))

    Args:
        model: the multi-task supernet (the ``MTLModel`` contract,
            :class:`automtl.train.protocols.MultiTaskModel`: ``model(x, task=, stage=, tau=,
            hard=, policy=)``, ``heads``, ``weight_parameters()``, ``policy_parameters()``,
            ``policy_regularizer()``, ``argmax_policy()``, ``set_policy()``); checked on construction.
        train_loaders / val_loaders: ``{task: DataLoader}``; a train loader's ``batch_size`` is
            the global batch (split over ranks under ``torchrun``).
        criteria: ``{task: loss_fn(output, target) -> scalar}``; every task must have a head.
        metrics: ``{task: metric}`` with ``reset()``, ``update(output, target)``, ``compute()``.
        work_dir: where checkpoints, ``train.log``, tensorboard events and history go.
        weighting: loss-weighting method name (``automtl.train.weighting``) or an instance
            following :class:`automtl.train.protocols.LossWeighting`.
        policy_split: fraction of each training set used for policy steps (the rest for
            weight steps) in ``alter_train_with_reg``, unless ``policy_loaders`` are given.
        checkpoint_iters: write the phase checkpoint every this many iterations (0: only at the end).
        baseline: single-task baseline (``automtl.metrics.Baseline``, its JSON file, or
            ``{task: {metric: value}}``) for Δm in :meth:`validate`.
        fingerprint: the run-defining settings (:class:`automtl.train.fingerprint.Fingerprint`)
            every phase checkpoint carries; a resume with other settings is refused, naming them.
    """

    def __init__(self, model: nn.Module, train_loaders: Mapping[str, DataLoader],
                 val_loaders: Mapping[str, DataLoader], criteria: Mapping[str, Callable],
                 metrics: Mapping[str, Any] | None = None, *, work_dir: str | os.PathLike = "work_dirs/automtl",
                 device: str | torch.device | None = None, seed: int = 0, weighting: Any = "fixed",
                 policy_loaders: Mapping[str, DataLoader] | None = None, policy_split: float = 0.5,
                 print_iters: int = 50, val_iters: int = 0, checkpoint_iters: int = 100,
                 baseline: str | os.PathLike | Mapping | None = None, progress: bool = True,
                 tensorboard: bool = True, writer_path: str | os.PathLike | None = None,
                 fingerprint: Fingerprint | None = None) -> None:
        self.model = check_model(model)
        head_tasks = list(self.model.heads.keys())
        for task in criteria:
            if task not in head_tasks:
                raise UnknownTaskError(f"criteria name task '{task}' but the model has heads only for "
                                       f"{head_tasks}")
        self.tasks: list[str] = list(criteria)
        for name, loaders in (("train_loaders", train_loaders), ("val_loaders", val_loaders)):
            missing = [t for t in self.tasks if t not in loaders]
            if missing:
                raise ConfigError(f"no loader for task(s) {missing}", key=name)
        if metrics is not None:
            missing = [t for t in self.tasks if t not in metrics]
            if missing:
                raise ConfigError(f"no metric for task(s) {missing}", key="metrics")
        self.dist, self.device = init_distributed(torch.device(device) if device is not None else None)
        seed_everything(seed)
        self.seed = seed
        self.model.to(self.device)
        broadcast_module(model)
        self.train_loaders = dict(train_loaders)
        self.val_loaders = dict(val_loaders)
        self.policy_loaders = dict(policy_loaders) if policy_loaders is not None else None
        self.criteria = dict(criteria)
        self.metrics = dict(metrics) if metrics is not None else None
        self.policy_split = policy_split
        self.print_iters = print_iters
        self.val_iters = val_iters
        self.checkpoint_iters = checkpoint_iters
        self.progress = progress
        self.fingerprint = fingerprint
        self.work_dir = Path(work_dir)
        self.checkpoint_dir = self.work_dir / "checkpoints"
        self.baseline = as_baseline(baseline) if baseline is not None else None
        self.weighting = build_loss_weighting(weighting, self.tasks)
        if self.weighting is not None:
            self.weighting.to(self.device)
        self.monitor = RunMonitor(self.work_dir, enabled=self.dist.is_main, tensorboard=tensorboard,
                                  writer_path=writer_path)
        self.tau = 5.0
        self.policy: Any = None
        self.monitor.write_config({
            "tasks": self.tasks, "seed": seed, "device": str(self.device), "world_size": self.dist.world,
            "weighting": self.weighting.name if self.weighting is not None else "fixed",
            "policy_split": policy_split, "checkpoint_iters": checkpoint_iters, "val_iters": val_iters,
            "model": type(model).__name__,
        })

    # ------------------------------------------------------------------ phases
    def pre_train(self, iters: int, lr: float = 1e-3, *, save_path: str | os.PathLike | None = None,
                  decay_lr_freq: int | None = None, decay_lr_rate: float = 0.5, weight_decay: float = 1e-4,
                  loss_lambda: Mapping[str, float] | None = None, optimizer: Mapping[str, Any] | None = None,
                  resume: bool = False) -> Path:
        """Train the shared weights with every branch active (stage ``pre``); returns the weights file.

        ``optimizer`` (a :func:`~automtl.train.optim.build_optimizer` spec) defaults to AutoMTL's:
        Adam, betas (0.5, 0.999), with ``weight_decay`` 1e-4."""
        lambdas = loss_lambdas(loss_lambda, self.tasks)
        stepper = self._stepper()
        state = self._phase("pre_train", iters)
        state.optimizers["network"] = build_optimizer(
            stepper.weight_params(), optimizer or AUTOMTL_OPTIMIZERS["pre_train"], lr=lr,
            weight_decay=weight_decay, extra=stepper.weighting_params(), key="pre_train.optimizer")
        state.schedulers["network"] = step_lr(state.optimizers["network"], decay_lr_freq, decay_lr_rate, iters)
        state.streams["train"] = self._streams("train")

        def step(it: int) -> dict[str, float]:
            return stepper.weight_step(state, "train", "network", lambdas, dict(stage="pre"), it)

        return self._run(state, step, save_path, resume, eval_stage="pre", lr=lr)

    def alter_train_with_reg(self, iters: int, policy_network_iters: tuple[int, int] = (100, 400), *,
                             policy_lr: float = 0.01, network_lr: float = 1e-4,
                             loss_lambda: Mapping[str, float] | None = None,
                             save_path: str | os.PathLike | None = None, init_tau: float = 5.0,
                             tau_decay: float = 0.965, tau_decay_every: int | None = None,
                             decay_lr_freq: int | None = None, decay_lr_rate: float = 0.5,
                             weight_decay: float = 1e-4, optimizer: Mapping[str, Any] | None = None,
                             policy_optimizer: Mapping[str, Any] | None = None,
                             policy_weight_decay: float = 5e-4, reg_sharpness: float | None = None,
                             reg_weights: tuple[float, float] | None = None, reg_depth: str | None = None,
                             resume: bool = False) -> Path:
        """Alternate weight steps and policy steps (Adam on the logits) on separate data splits.

        Each cycle runs ``network_iters`` weight steps then ``policy_iters`` policy steps
        (``policy_network_iters = (policy_iters, network_iters)`` as in AutoMTL). Both use the
        Gumbel-softmax mixture at temperature τ; τ starts at ``init_tau`` and is multiplied by
        ``tau_decay`` after every policy block (or every ``tau_decay_every`` iterations when
        given). Policy steps add ``loss_lambda["policy"] * model.policy_regularizer()`` and
        always weight the task losses by the fixed λ (the weighting method applies to weight steps).

        Optimisers default to AutoMTL's: SGD with momentum 0.9 and ``weight_decay`` 1e-4 for the
        weights (``optimizer``), Adam with ``policy_weight_decay`` 5e-4 for the logits
        (``policy_optimizer``). ``reg_sharpness`` / ``reg_weights`` / ``reg_depth`` go to the
        regulariser (``None``: the model's own defaults, AutoMTL's sharpness 6 and longest-path
        depth for ``MTLModel``).
        """
        policy_iters, network_iters = (int(v) for v in policy_network_iters)
        if policy_iters < 1 or network_iters < 1:
            raise ConfigError("both entries must be >= 1", key="policy_network_iters")
        lambdas = loss_lambdas(loss_lambda, self.tasks)
        reg_weight = float((loss_lambda or {}).get("policy", 5e-4))
        stepper = self._stepper()
        state = self._phase("alter_train_with_reg", iters, tau=init_tau)
        state.optimizers["network"] = build_optimizer(
            stepper.weight_params(), optimizer or AUTOMTL_OPTIMIZERS["network"], lr=network_lr,
            weight_decay=weight_decay, extra=stepper.weighting_params(), key="alter_train_with_reg.optimizer")
        state.optimizers["policy"] = build_optimizer(
            list(self.model.policy_parameters()), policy_optimizer or AUTOMTL_OPTIMIZERS["policy"], lr=policy_lr,
            weight_decay=policy_weight_decay, key="alter_train_with_reg.policy_optimizer")
        reg_kwargs: dict[str, Any] = {}
        if reg_sharpness is not None:
            reg_kwargs["sharpness"] = float(reg_sharpness)
        if reg_weights is not None:
            reg_kwargs["weights"] = tuple(float(w) for w in reg_weights)
        if reg_depth is not None:  # "graph" (AutoMTL's longest-path depth) or "index"
            reg_kwargs["depth"] = reg_depth
        state.schedulers["network"] = step_lr(state.optimizers["network"], decay_lr_freq, decay_lr_rate, iters)
        weight_idx, policy_idx = self._split()
        state.streams["weights"] = self._streams("weights", weight_idx)
        state.streams["policy"] = self._streams("policy", policy_idx)
        cycle = policy_iters + network_iters

        def step(it: int) -> dict[str, float]:
            pos = it % cycle
            kw = dict(stage="mtl", tau=state.tau, hard=False)
            if pos < network_iters:
                with frozen(self.model.policy_parameters()):
                    logs = stepper.weight_step(state, "weights", "network", lambdas, kw, it)
            else:
                with frozen(stepper.weight_params()):
                    logs = stepper.policy_step(state, lambdas, reg_weight, kw, it, reg_kwargs)
            logs["tau"] = state.tau
            end_of_policy_block = pos == cycle - 1
            if (tau_decay_every is None and end_of_policy_block) or \
                    (tau_decay_every is not None and (it + 1) % tau_decay_every == 0):
                state.tau *= tau_decay
            self.tau = state.tau
            return logs

        return self._run(state, step, save_path, resume, eval_stage="mtl", lr=network_lr)

    def post_train(self, iters: int, lr: float = 1e-3, *, loss_lambda: Mapping[str, float] | None = None,
                   save_path: str | os.PathLike | None = None, reload: Any = None,
                   weights: str | os.PathLike | None = None, decay_lr_freq: int | None = 4000,
                   decay_lr_rate: float = 0.5, weight_decay: float = 1e-4,
                   optimizer: Mapping[str, Any] | None = None, resume: bool = False) -> Path:
        """Train the weights under a fixed policy (``reload``: a ``Policy`` or its JSON path).

        ``weights`` optionally loads a weights file (e.g. the policy-train result) first. The
        optimiser defaults to AutoMTL's: Adam, betas (0.5, 0.999), ``weight_decay`` 1e-4, the
        rate halved every 4000 iterations (StepLR; ``decay_lr_freq=None``: constant).
        """
        if weights is not None:
            self.load_weights(weights)
        self.policy = self._resolve_policy(reload)
        self.model.set_policy(self.policy)  # so forward_all / compile use it afterwards
        if self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.policy.save(self.work_dir / "post_train_policy.json")
        lambdas = loss_lambdas(loss_lambda, self.tasks)
        stepper = self._stepper()
        state = self._phase("post_train", iters)
        state.optimizers["network"] = build_optimizer(
            stepper.weight_params(), optimizer or AUTOMTL_OPTIMIZERS["post_train"], lr=lr,
            weight_decay=weight_decay, extra=stepper.weighting_params(), key="post_train.optimizer")
        state.schedulers["network"] = step_lr(state.optimizers["network"], decay_lr_freq, decay_lr_rate, iters)
        state.streams["train"] = self._streams("train")

        def step(it: int) -> dict[str, float]:
            return stepper.weight_step(state, "train", "network", lambdas,
                                       dict(stage="fixed", policy=self.policy), it)

        return self._run(state, step, save_path, resume, eval_stage="fixed", lr=lr)

    # ------------------------------------------------------------------ delta sharing (automtl.delta)
    def delta_train(self, iters: int, lr: float = 1e-3, **kwargs: Any) -> Path:
        """Step 1 of delta sharing: learn sparse weight deltas with L0 gates or L1
        (:func:`automtl.train.delta_phases.delta_train`)."""
        from automtl.train.delta_phases import delta_train

        return delta_train(self, iters, lr, **kwargs)

    def delta_support_train(self, iters: int, lr: float = 1e-3, **kwargs: Any) -> Path:
        """Step 2: fix the deltas' support at ``density`` and fine-tune it
        (:func:`automtl.train.delta_phases.delta_support_train`)."""
        from automtl.train.delta_phases import delta_support_train

        return delta_support_train(self, iters, lr, **kwargs)

    def delta_act_train(self, iters: int, lr: float = 1e-4, **kwargs: Any) -> Path:
        """Step 3: fine-tune with an L1 penalty on the delta activations; set the inference
        thresholds (:func:`automtl.train.delta_phases.delta_act_train`)."""
        from automtl.train.delta_phases import delta_act_train

        return delta_act_train(self, iters, lr, **kwargs)

    # ------------------------------------------------------------------ evaluation
    def validate(self, stage: str = "mtl", hard: bool = True, *, policy: Any = None,
                 baseline: str | os.PathLike | Mapping | None = None, iteration: int | None = None,
                 loaders: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Per-task metrics on the validation loaders, plus Δm when a baseline is known.

        ``stage``: ``"pre"`` (all branches averaged), ``"mtl"`` (``hard=True``: the argmax policy
        of the current logits; ``hard=False``: the soft Gumbel mixture at the current τ) or
        ``"fixed"`` (``policy``, else the post-train policy). Returns
        ``{task: {metric: value}, "delta_m": {...}}`` (Δm only with a baseline). ``loaders``
        replaces the validation loaders (e.g. a test split).
        """
        if self.metrics is None:
            raise ConfigError("the trainer was built without metrics", key="metrics")
        chosen = None
        if stage == "fixed":
            chosen = self._resolve_policy(policy) if policy is not None else self.policy
        kw = stage_kwargs(stage, hard, model=self.model, tau=self.tau, policy=chosen)
        result: dict[str, Any] = {}
        if self.dist.is_main:
            result = dict(task_metrics(self.model, self.tasks, loaders or self.val_loaders, self.metrics, kw,
                                       self.device, stage=stage, iteration=iteration))
            base = as_baseline(baseline) if baseline is not None else self.baseline
            if base is not None:
                result["delta_m"] = base.delta({t: result[t] for t in self.tasks})
        return share_result(result, self.dist)

    # ------------------------------------------------------------------ weights
    def save_weights(self, path: str | os.PathLike) -> Path:
        """Write the model weights (and τ) to ``path`` atomically."""
        return atomic_save({"model": self.model.state_dict(), "tau": self.tau}, path)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a weights file written by a phase (or by :meth:`save_weights`)."""
        ckpt = safe_load(path, map_location=self.device)
        if "model" not in ckpt:
            raise CheckpointError(f"{path}: no 'model' entry")
        load_model_state(self.model, ckpt["model"], path)
        self.tau = float(ckpt.get("tau", self.tau))

    def close(self) -> None:
        """Flush and close the log files."""
        self.monitor.close()

    # ------------------------------------------------------------------ wiring
    def _stepper(self) -> StepRunner:
        return StepRunner(self.model, self.tasks, self.criteria, self.weighting, self.device, self.dist.world)

    def _phase(self, name: str, iters: int, tau: float = 5.0) -> PhaseState:
        state = PhaseState(name, iters, self.model, values={"tau": float(tau)}, curves=self.monitor.curves(name),
                           fingerprint=self.fingerprint.upto(name) if self.fingerprint is not None else None)
        if self.weighting is not None:
            state.extras["weighting"] = self.weighting
        return state

    def _run(self, state: PhaseState, step: Callable[[int], dict[str, float]], save_path: Any,
             resume: bool, *, eval_stage: str, lr: float) -> Path:
        folder = Path(save_path) if save_path is not None else self.work_dir
        checkpoint = Checkpointer(self.checkpoint_dir / f"{state.run}_latest.pt", map_location=self.device,
                                  is_main=self.dist.is_main, world=self.dist.world)
        loop = PhaseLoop(self, self.monitor, Cadence(self.print_iters, self.val_iters, self.checkpoint_iters),
                         tasks=self.tasks, world=self.dist.world, is_main=self.dist.is_main,
                         progress=self.progress)
        return loop.run(state, step, final=folder / f"{state.run}.pt", checkpoint=checkpoint, resume=resume,
                        eval_stage=eval_stage if self.metrics is not None else None, lr=lr)

    def _streams(self, split: str, indices: dict[str, list[int]] | None = None) -> dict[str, TaskStream]:
        loaders = self.train_loaders
        if split == "policy" and self.policy_loaders is not None:
            loaders = self.policy_loaders
        return phase_streams(loaders, self.tasks, split, seed=self.seed, indices=indices,
                             rank=self.dist.rank, world=self.dist.world)

    def _split(self) -> tuple[dict[str, list[int]] | None, dict[str, list[int]] | None]:
        if self.policy_loaders is not None:
            return None, None
        return weight_policy_split(self.train_loaders, self.tasks, self.policy_split, self.seed)

    def _resolve_policy(self, reload: Any) -> Any:
        if reload is None:
            raise ConfigError("post_train needs reload= (a Policy or a policy JSON path)", key="reload")
        if isinstance(reload, (str, os.PathLike)):
            from automtl.supernet import Policy

            return Policy.load(reload, model=self.model)
        return reload
