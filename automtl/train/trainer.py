"""The AutoMTL three-phase trainer: pre-train, alternating policy-train, post-train, validate.

Keyword names follow AutoMTL's README (``iters``, ``lr``, ``policy_network_iters``,
``policy_lr``, ``network_lr``, ``loss_lambda``, ``save_path``, ``reload``, ``decay_lr_freq``,
``decay_lr_rate``) so its users can switch. Every phase checkpoints atomically every
``checkpoint_iters`` iterations and resumes to the same weights as an uninterrupted run.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from automtl.errors import CheckpointError, ConfigError, TrainingError, UnknownTaskError
from automtl.train.batches import move_to, split_batch
from automtl.train.checkpoint import atomic_save, rng_state, safe_load, seed_everything, set_rng_state
from automtl.train.distributed import (all_reduce_mean, average_gradients, barrier, broadcast_module,
                                       init_distributed)
from automtl.train.evaluation import as_baseline, run_metrics
from automtl.train.monitor import RunMonitor
from automtl.train.streams import TaskStream, split_indices

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

PHASES = ("pre_train", "alter_train_with_reg", "post_train")


@dataclass
class _PhaseState:
    """Everything a phase needs to resume: position, optimisers, schedulers, streams, τ."""

    name: str
    iters: int
    it: int = 0
    tau: float = 5.0
    complete: bool = False
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, dict[str, TaskStream]] = field(default_factory=dict)
    last_checkpoint: Path | None = None


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
        model: the multi-task supernet (``MTLModel`` contract: ``model(x, task=, stage=, tau=,
            hard=, policy=)``, ``weight_parameters()``, ``policy_parameters()``,
            ``policy_regularizer()``, ``argmax_policy()``, ``set_policy()``).
        train_loaders / val_loaders: ``{task: DataLoader}``; a train loader's ``batch_size`` is
            the global batch (split over ranks under ``torchrun``).
        criteria: ``{task: loss_fn(output, target) -> scalar}``; every task must have a head.
        metrics: ``{task: metric}`` with ``reset()``, ``update(output, target)``, ``compute()``.
        work_dir: where checkpoints, ``train.log``, tensorboard events and history go.
        weighting: loss-weighting method name (``automtl.train.weighting``) or an instance.
        policy_split: fraction of each training set used for policy steps (the rest for
            weight steps) in ``alter_train_with_reg``, unless ``policy_loaders`` are given.
        checkpoint_iters: write the phase checkpoint every this many iterations (0: only at the end).
        baseline: single-task baseline (``automtl.metrics.Baseline``, its JSON file, or
            ``{task: {metric: value}}``) for Δm in :meth:`validate`.
    """

    def __init__(self, model: nn.Module, train_loaders: Mapping[str, "DataLoader"],
                 val_loaders: Mapping[str, "DataLoader"], criteria: Mapping[str, Callable],
                 metrics: Mapping[str, Any] | None = None, *, work_dir: str | os.PathLike = "work_dirs/automtl",
                 device: str | torch.device | None = None, seed: int = 0, weighting: Any = "fixed",
                 policy_loaders: Mapping[str, "DataLoader"] | None = None, policy_split: float = 0.5,
                 print_iters: int = 50, val_iters: int = 0, checkpoint_iters: int = 100,
                 baseline: str | os.PathLike | Mapping | None = None, progress: bool = True,
                 tensorboard: bool = True, writer_path: str | os.PathLike | None = None) -> None:
        heads = getattr(model, "heads", None)
        head_tasks = list(heads.keys()) if heads is not None else list(getattr(model, "tasks", []))
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
        self.model = model.to(self.device)
        broadcast_module(self.model)
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
        self.work_dir = Path(work_dir)
        self.checkpoint_dir = self.work_dir / "checkpoints"
        self.baseline = as_baseline(baseline) if baseline is not None else None
        self.weighting = _build_weighting(weighting, self.tasks)
        if hasattr(self.weighting, "to"):
            self.weighting.to(self.device)
        self.monitor = RunMonitor(self.work_dir, enabled=self.dist.is_main, tensorboard=tensorboard,
                                  writer_path=writer_path)
        self.tau = 5.0
        self.policy = None
        self.monitor.write_config({
            "tasks": self.tasks, "seed": seed, "device": str(self.device), "world_size": self.dist.world,
            "weighting": getattr(self.weighting, "name", type(self.weighting).__name__),
            "policy_split": policy_split, "checkpoint_iters": checkpoint_iters, "val_iters": val_iters,
            "model": type(model).__name__,
        })

    # ------------------------------------------------------------------ phases
    def pre_train(self, iters: int, lr: float = 1e-3, *, save_path: str | os.PathLike | None = None,
                  decay_lr_freq: int | None = None, decay_lr_rate: float = 0.5, weight_decay: float = 0.0,
                  loss_lambda: Mapping[str, float] | None = None, resume: bool = False) -> Path:
        """Train the shared weights with every branch active (stage ``pre``); returns the weights file."""
        lambdas = self._lambdas(loss_lambda)
        state = _PhaseState("pre_train", iters)
        params = list(self._weight_params())
        state.optimizers["network"] = self._adam(params, lr, weight_decay)
        state.schedulers["network"] = _step_lr(state.optimizers["network"], decay_lr_freq, decay_lr_rate, iters)
        state.streams["train"] = self._streams("train")

        def step(it: int) -> dict[str, float]:
            return self._weight_step(state, "train", "network", lambdas, dict(stage="pre"), it)

        return self._run(state, step, save_path, resume, eval_stage="pre", lr=lr)

    def alter_train_with_reg(self, iters: int, policy_network_iters: tuple[int, int] = (100, 400), *,
                             policy_lr: float = 0.01, network_lr: float = 1e-4,
                             loss_lambda: Mapping[str, float] | None = None,
                             save_path: str | os.PathLike | None = None, init_tau: float = 5.0,
                             tau_decay: float = 0.965, tau_decay_every: int | None = None,
                             decay_lr_freq: int | None = None, decay_lr_rate: float = 0.5,
                             weight_decay: float = 0.0, resume: bool = False) -> Path:
        """Alternate weight steps and policy steps (Adam on the logits) on separate data splits.

        Each cycle runs ``network_iters`` weight steps then ``policy_iters`` policy steps
        (``policy_network_iters = (policy_iters, network_iters)`` as in AutoMTL). Both use the
        Gumbel-softmax mixture at temperature τ; τ starts at ``init_tau`` and is multiplied by
        ``tau_decay`` after every policy block (or every ``tau_decay_every`` iterations when
        given). Policy steps add ``loss_lambda["policy"] * model.policy_regularizer()`` and
        always weight the task losses by the fixed λ (the weighting method applies to weight steps).
        """
        policy_iters, network_iters = (int(v) for v in policy_network_iters)
        if policy_iters < 1 or network_iters < 1:
            raise ConfigError("both entries must be >= 1", key="policy_network_iters")
        lambdas = self._lambdas(loss_lambda)
        reg_weight = float((loss_lambda or {}).get("policy", 5e-4))
        state = _PhaseState("alter_train_with_reg", iters, tau=init_tau)
        state.optimizers["network"] = self._adam(list(self._weight_params()), network_lr, weight_decay)
        state.optimizers["policy"] = torch.optim.Adam(list(self.model.policy_parameters()), lr=policy_lr)
        state.schedulers["network"] = _step_lr(state.optimizers["network"], decay_lr_freq, decay_lr_rate, iters)
        weight_idx, policy_idx = self._split()
        state.streams["weights"] = self._streams("weights", weight_idx)
        state.streams["policy"] = self._streams("policy", policy_idx)
        cycle = policy_iters + network_iters

        def step(it: int) -> dict[str, float]:
            pos = it % cycle
            kw = dict(stage="mtl", tau=state.tau, hard=False)
            if pos < network_iters:
                with _frozen(self.model.policy_parameters()):
                    logs = self._weight_step(state, "weights", "network", lambdas, kw, it)
            else:
                with _frozen(self._weight_params()):
                    logs = self._policy_step(state, lambdas, reg_weight, kw, it)
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
                   weights: str | os.PathLike | None = None, decay_lr_freq: int | None = None,
                   decay_lr_rate: float = 0.5, weight_decay: float = 0.0, resume: bool = False) -> Path:
        """Train the weights under a fixed policy (``reload``: a ``Policy`` or its JSON path).

        ``weights`` optionally loads a weights file (e.g. the policy-train result) first.
        """
        if weights is not None:
            self.load_weights(weights)
        self.policy = self._resolve_policy(reload)
        if hasattr(self.model, "set_policy"):
            self.model.set_policy(self.policy)  # so forward_all / compile use it afterwards
        self._save_policy_file(self.policy)
        lambdas = self._lambdas(loss_lambda)
        state = _PhaseState("post_train", iters)
        state.optimizers["network"] = self._adam(list(self._weight_params()), lr, weight_decay)
        state.schedulers["network"] = _step_lr(state.optimizers["network"], decay_lr_freq, decay_lr_rate, iters)
        state.streams["train"] = self._streams("train")

        def step(it: int) -> dict[str, float]:
            return self._weight_step(state, "train", "network", lambdas,
                                     dict(stage="fixed", policy=self.policy), it)

        return self._run(state, step, save_path, resume, eval_stage="fixed", lr=lr)

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
        kw = self._eval_kwargs(stage, hard, policy)
        result: dict[str, Any] = {}
        if self.dist.is_main:
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    for task in self.tasks:
                        fwd = lambda x, t=task: self.model(x, task=t, **kw)  # noqa: E731
                        source = (loaders or self.val_loaders)[task]
                        result[task] = run_metrics(fwd, source, self.metrics[task],
                                                   self.device, task)
            finally:
                self.model.train(was_training)
            for task in self.tasks:
                for name, value in result[task].items():
                    if not math.isfinite(value):
                        at = f" at iteration {iteration}" if iteration is not None else ""
                        raise TrainingError(f"metric '{name}' of task '{task}' is {value}{at} ({stage} validation)")
            base = as_baseline(baseline) if baseline is not None else self.baseline
            if base is not None:
                result["delta_m"] = base.delta({t: result[t] for t in self.tasks})
        if self.dist.enabled:
            import torch.distributed as dist

            box = [result]
            dist.broadcast_object_list(box, src=0)
            result = box[0]
        return result

    # ------------------------------------------------------------------ weights
    def save_weights(self, path: str | os.PathLike) -> Path:
        """Write the model weights (and τ) to ``path`` atomically."""
        return atomic_save({"model": self.model.state_dict(), "tau": self.tau}, path)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a weights file written by a phase (or by :meth:`save_weights`)."""
        ckpt = safe_load(path, map_location=self.device)
        if "model" not in ckpt:
            raise CheckpointError(f"{path}: no 'model' entry")
        _load_model_state(self.model, ckpt["model"], path)
        self.tau = float(ckpt.get("tau", self.tau))

    def close(self) -> None:
        """Flush and close the log files."""
        self.monitor.close()

    # ------------------------------------------------------------------ internals: steps
    def _weight_step(self, state: _PhaseState, split: str, opt_name: str, lambdas: dict[str, float],
                     kw: dict[str, Any], it: int) -> dict[str, float]:
        opt = state.optimizers[opt_name]
        opt.zero_grad(set_to_none=True)
        losses = self._task_losses(state.streams[split], kw)
        values = self._check_losses(losses, state, it)
        params = [p for p in self._weight_params() if p.requires_grad]
        if self.weighting is None:
            total = sum(lambdas[t] * losses[t] for t in self.tasks)
            total.backward()
        else:
            self.weighting.backward({t: lambdas[t] * losses[t] for t in self.tasks},
                                    shared_parameters=self._shared_params(params))
        average_gradients(params + self._weighting_params(), self.dist.world)
        opt.step()
        return {f"loss/{t}": v for t, v in values.items()}

    def _policy_step(self, state: _PhaseState, lambdas: dict[str, float], reg_weight: float,
                     kw: dict[str, Any], it: int) -> dict[str, float]:
        opt = state.optimizers["policy"]
        opt.zero_grad(set_to_none=True)
        losses = self._task_losses(state.streams["policy"], kw)
        values = self._check_losses(losses, state, it)
        reg = self.model.policy_regularizer()
        total = sum(lambdas[t] * losses[t] for t in self.tasks) + reg_weight * reg
        total.backward()
        average_gradients(list(self.model.policy_parameters()), self.dist.world)
        opt.step()
        logs = {f"policy_loss/{t}": v for t, v in values.items()}
        logs["policy_reg"] = float(reg.detach())
        return logs

    def _task_losses(self, streams: dict[str, TaskStream], kw: dict[str, Any]) -> dict[str, torch.Tensor]:
        losses = {}
        for task in self.tasks:
            x, y = split_batch(streams[task].next(), task)
            x, y = move_to(x, self.device), move_to(y, self.device)
            out = self.model(x, task=task, **kw)
            losses[task] = self.criteria[task](out, y)
        return losses

    def _check_losses(self, losses: dict[str, torch.Tensor], state: _PhaseState, it: int) -> dict[str, float]:
        vals = torch.stack([losses[t].detach().float().reshape(()) for t in self.tasks])
        vals = all_reduce_mean(vals, self.dist.world).tolist()
        for task, v in zip(self.tasks, vals):
            if not math.isfinite(v):
                kept = state.last_checkpoint or "none written yet"
                raise TrainingError(f"{state.name}: loss of task '{task}' is {v} at iteration {it + 1}; "
                                    f"stopped without saving; last good checkpoint: {kept}")
        return dict(zip(self.tasks, vals))

    # ------------------------------------------------------------------ internals: loop
    def _run(self, state: _PhaseState, step: Callable[[int], dict[str, float]], save_path: Any,
             resume: bool, *, eval_stage: str, lr: float) -> Path:
        final = Path(save_path) / f"{state.name}.pt" if save_path is not None else self.work_dir / f"{state.name}.pt"
        ckpt_path = self.checkpoint_dir / f"{state.name}_latest.pt"
        self.tau = state.tau
        if resume and ckpt_path.is_file():
            self._restore(state, ckpt_path)
            self.monitor.log(f"{state.name}: resumed from {ckpt_path} at iteration {state.it}/{state.iters}")
        if state.complete and final.is_file():
            self.load_weights(final)
            return final
        self.monitor.log(f"{state.name}: iterations {state.it}->{state.iters}, lr {lr}, tasks {self.tasks}, "
                         f"world {self.dist.world}")
        self.model.train()
        bar = tqdm(total=state.iters, initial=state.it, desc=state.name, dynamic_ncols=True,
                   disable=not (self.progress and self.dist.is_main), leave=False)
        t0 = time.time()
        try:
            for it in range(state.it, state.iters):
                logs = step(it)
                state.it = it + 1
                for sched in state.schedulers.values():
                    sched.step()
                gstep = self._phase_offset(state.name) + state.it
                for k, v in logs.items():
                    self.monitor.scalar(f"{state.name}/{k}", v, gstep)
                bar.update(1)
                if self.print_iters and (state.it % self.print_iters == 0 or state.it == state.iters):
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                    self.monitor.log(f"{state.name} iter {state.it}/{state.iters} "
                                     + " ".join(f"{k}={v:.4g}" for k, v in logs.items())
                                     + f" ({time.time() - t0:.1f}s)")
                if self.val_iters and self.metrics is not None and state.it % self.val_iters == 0:
                    self._log_validation(state, eval_stage, gstep)
                if self.checkpoint_iters and state.it % self.checkpoint_iters == 0 and state.it < state.iters:
                    self._checkpoint(state, ckpt_path)
        finally:
            bar.close()
            self.monitor.flush()
        state.complete = True
        if self.dist.is_main:
            self.save_weights(final)
        self._checkpoint(state, ckpt_path)
        self.monitor.log(f"{state.name}: done, weights in {final}")
        return final

    def _log_validation(self, state: _PhaseState, stage: str, gstep: int) -> None:
        res = self.validate(stage, hard=True, iteration=state.it)
        for task in self.tasks:
            for name, value in res[task].items():
                self.monitor.scalar(f"{state.name}/val/{task}/{name}", value, gstep)
        for name, value in res.get("delta_m", {}).items():
            self.monitor.scalar(f"{state.name}/val/{name}", value, gstep)
        self.monitor.log(f"{state.name} val iter {state.it}: {res}")

    def _checkpoint(self, state: _PhaseState, path: Path) -> None:
        if self.dist.is_main:
            atomic_save({
                "phase": state.name, "iters": state.iters, "it": state.it, "tau": state.tau,
                "complete": state.complete, "model": self.model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in state.schedulers.items()},
                "streams": {s: {t: st.state_dict() for t, st in d.items()} for s, d in state.streams.items()},
                "weighting": _weighting_state(self.weighting),
                "rng": rng_state(), "world": self.dist.world,
            }, path)
        barrier(self.dist.world)
        state.last_checkpoint = path

    def _restore(self, state: _PhaseState, path: Path) -> None:
        ckpt = safe_load(path, map_location=self.device)
        if ckpt.get("phase") != state.name or int(ckpt.get("iters", -1)) != state.iters:
            raise CheckpointError(f"{path}: holds phase '{ckpt.get('phase')}' of {ckpt.get('iters')} iterations, "
                                  f"cannot resume '{state.name}' of {state.iters}")
        _load_model_state(self.model, ckpt["model"], path)
        for k, o in state.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in state.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        for split, d in state.streams.items():
            for t, st in d.items():
                st.load_state_dict(ckpt["streams"][split][t])
        if ckpt.get("weighting") is not None and hasattr(self.weighting, "load_state_dict"):
            self.weighting.load_state_dict(ckpt["weighting"])
        set_rng_state(ckpt["rng"])
        state.it, state.tau, state.complete = int(ckpt["it"]), float(ckpt["tau"]), bool(ckpt["complete"])
        state.last_checkpoint = path
        self.tau = state.tau

    # ------------------------------------------------------------------ internals: helpers
    def _phase_offset(self, name: str) -> int:
        return PHASES.index(name) * 1_000_000 if name in PHASES else 0

    def _lambdas(self, loss_lambda: Mapping[str, float] | None) -> dict[str, float]:
        loss_lambda = dict(loss_lambda or {})
        unknown = [k for k in loss_lambda if k != "policy" and k not in self.tasks]
        if unknown:
            raise ConfigError(f"loss_lambda names task(s) {unknown} that have no criterion", key="loss_lambda")
        return {t: float(loss_lambda.get(t, 1.0)) for t in self.tasks}

    def _weight_params(self) -> Iterator[nn.Parameter]:
        if hasattr(self.model, "weight_parameters"):
            return iter(self.model.weight_parameters())
        return iter(self.model.parameters())

    def _shared_params(self, params: list[nn.Parameter]) -> list[nn.Parameter]:
        heads = getattr(self.model, "heads", None)
        if heads is None:
            return params
        head_ids = {id(p) for p in heads.parameters()}
        return [p for p in params if id(p) not in head_ids]

    def _weighting_params(self) -> list[nn.Parameter]:
        if isinstance(self.weighting, nn.Module):
            return list(self.weighting.parameters())
        return []

    def _adam(self, params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": params}]
        extra = self._weighting_params()
        if extra:
            groups.append({"params": extra, "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)

    def _streams(self, split: str, indices: dict[str, list[int]] | None = None) -> dict[str, TaskStream]:
        seed_of = {"train": 0, "weights": 1, "policy": 2}[split]
        out = {}
        for i, task in enumerate(self.tasks):
            loader = self.train_loaders[task]
            if split == "policy" and self.policy_loaders is not None:
                loader = self.policy_loaders[task]
            idx = None if indices is None else indices.get(task)
            out[task] = TaskStream(loader, seed=self.seed * 101 + seed_of * 13 + i, indices=idx,
                                   rank=self.dist.rank, world=self.dist.world, name=task)
        return out

    def _split(self) -> tuple[dict[str, list[int]] | None, dict[str, list[int]] | None]:
        if self.policy_loaders is not None:
            return None, None
        w, p = {}, {}
        for i, task in enumerate(self.tasks):
            w[task], p[task] = split_indices(len(self.train_loaders[task].dataset), self.policy_split,
                                             self.seed + i)
        return w, p

    def _eval_kwargs(self, stage: str, hard: bool, policy: Any) -> dict[str, Any]:
        if stage == "pre":
            return {"stage": "pre"}
        if stage == "mtl":
            if hard:
                return {"stage": "fixed", "policy": self.model.argmax_policy()}
            return {"stage": "mtl", "tau": self.tau, "hard": False}
        if stage == "fixed":
            chosen = self._resolve_policy(policy) if policy is not None else self.policy
            if chosen is None:
                raise ConfigError("no policy: pass policy= or run post_train first", key="policy")
            return {"stage": "fixed", "policy": chosen}
        raise ConfigError(f"unknown stage '{stage}'; use 'pre', 'mtl' or 'fixed'", key="stage")

    def _resolve_policy(self, reload: Any) -> Any:
        if reload is None:
            raise ConfigError("post_train needs reload= (a Policy or a policy JSON path)", key="reload")
        if isinstance(reload, (str, os.PathLike)):
            from automtl.supernet import Policy

            return Policy.load(reload, model=self.model)
        return reload

    def _save_policy_file(self, policy: Any) -> None:
        if self.dist.is_main and hasattr(policy, "save"):
            self.work_dir.mkdir(parents=True, exist_ok=True)
            policy.save(self.work_dir / "post_train_policy.json")


@contextmanager
def _frozen(params: Any) -> Iterator[None]:
    """Temporarily stop gradients for ``params`` (saves the backward work of the other optimiser)."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _step_lr(opt: torch.optim.Optimizer, freq: int | None, rate: float, iters: int) -> Any:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=int(freq) if freq else max(iters, 1) + 1,
                                           gamma=rate if freq else 1.0)


def _load_model_state(model: nn.Module, state: dict, path: Any) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not fit the model; missing keys {list(missing)[:8]}, "
                              f"unexpected keys {list(unexpected)[:8]}")


def _build_weighting(weighting: Any, tasks: list[str]) -> Any:
    """``None`` for plain fixed λ; otherwise a weighting object from ``automtl.train.weighting``."""
    if weighting is None or weighting == "fixed":
        return None
    if isinstance(weighting, (str, Mapping)):
        from automtl.train.weighting import build_weighting

        return build_weighting(weighting, tasks)
    return weighting


def _weighting_state(weighting: Any) -> Any:
    if weighting is not None and hasattr(weighting, "state_dict"):
        return weighting.state_dict()
    return None
