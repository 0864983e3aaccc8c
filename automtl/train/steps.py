"""One optimisation step of a trainer phase: task losses, a finite-loss check, the weighted
backward pass, gradient averaging over processes and the optimiser step.

Weight steps combine the task losses through the loss weighting (plain Σ λ_t L_t without
one); policy steps always use the fixed λ plus the policy regulariser. Either way the loss
values are averaged over processes first, so every rank stops on the same non-finite loss.

Modules with a method ``auxiliary_losses() -> {name: Tensor}`` (mixture-of-experts balance
losses, L0 penalties…) return the losses of their latest forward, already weighted (``{}``
before their first forward); each task's forward is followed by collecting those of the
modules that ran in it, and they join that task's loss unscaled by λ.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import nn

from automtl.errors import ConfigError, TrainingError
from automtl.train.batches import move_to, split_batch
from automtl.train.distributed import all_reduce_mean, average_gradients
from automtl.train.protocols import LossWeighting, MultiTaskModel
from automtl.train.resume import TrainingState

__all__ = ["AuxiliaryLosses", "StepRunner", "auxiliary_loss_modules", "frozen", "loss_lambdas"]


def auxiliary_loss_modules(model: nn.Module) -> list[nn.Module]:
    """The sub-modules of ``model`` that report auxiliary losses (``auxiliary_losses()``)."""
    return [m for m in model.modules() if callable(getattr(m, "auxiliary_losses", None))]


class AuxiliaryLosses:
    """Collects the auxiliary losses that ``modules`` report after a forward, counting only the
    modules that ran in it: a module that did not run still holds the loss *object* it reported
    before, which is recognised and skipped."""

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self.modules = list(modules)
        # the loss objects last collected, held (not their ids: a freed object's id can return)
        self.seen: dict[tuple[int, str], torch.Tensor] = {}
        self.collect()  # what the modules hold now is stale for the next forward

    def collect(self) -> dict[str, torch.Tensor]:
        """``{name: loss}`` reported since the last call (names suffixed by module index when two
        modules use the same name)."""
        out: dict[str, torch.Tensor] = {}
        for i, m in enumerate(self.modules):
            for name, value in m.auxiliary_losses().items():  # type: ignore[operator]
                key = (i, name)
                if self.seen.get(key) is value:
                    continue
                self.seen[key] = value
                out[name if name not in out else f"{name}.{i}"] = value
        return out


class StepRunner:
    """Runs the optimisation steps of every phase for one model, set of tasks and weighting."""

    def __init__(self, model: MultiTaskModel, tasks: Sequence[str], criteria: Mapping[str, Callable],
                 weighting: LossWeighting | None, device: torch.device, world: int = 1) -> None:
        self.model = model
        self.tasks = list(tasks)
        self.criteria = criteria
        self.weighting = weighting
        self.device = device
        self.world = world
        self.aux_losses = AuxiliaryLosses(auxiliary_loss_modules(model) if isinstance(model, nn.Module) else [])
        #: per task, the summed auxiliary losses of its latest forward (empty without any)
        self.aux: dict[str, torch.Tensor] = {}

    def weight_params(self) -> list[nn.Parameter]:
        """The network weights (everything but the policy logits)."""
        return list(self.model.weight_parameters())

    def weighting_params(self) -> list[nn.Parameter]:
        """The learnable parameters of the loss weighting (none for fixed λ)."""
        return [] if self.weighting is None else list(self.weighting.parameters())

    def weight_step(self, state: TrainingState, split: str, optimizer: str, lambdas: Mapping[str, float],
                    kw: Mapping[str, Any], it: int) -> dict[str, float]:
        """One step of ``optimizer`` on the weights with batches of stream ``split``; returns the
        logged losses."""
        opt = state.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        losses = self.task_losses(state.streams[split], kw)
        values = self.check_losses(losses, state, it)
        params = [p for p in self.weight_params() if p.requires_grad]
        weighted = {t: lambdas[t] * losses[t] + self.aux[t] if t in self.aux else lambdas[t] * losses[t]
                    for t in self.tasks}
        if self.weighting is None:
            total = cast(torch.Tensor, sum(weighted.values()))
            total.backward()
        else:
            self.weighting.backward(weighted, shared_parameters=self._shared(params))
        average_gradients(params + self.weighting_params(), self.world)
        opt.step()
        return {**{f"loss/{t}": v for t, v in values.items()}, **self._aux_logs()}

    def policy_step(self, state: TrainingState, lambdas: Mapping[str, float], reg_weight: float,
                    kw: Mapping[str, Any], it: int, reg_kwargs: Mapping[str, Any] | None = None,
                    ) -> dict[str, float]:
        """One step of the ``policy`` optimiser on the logits with ``policy`` stream batches:
        Σ λ_t L_t + ``reg_weight`` · the policy regulariser (called with ``reg_kwargs``)."""
        opt = state.optimizers["policy"]
        opt.zero_grad(set_to_none=True)
        losses = self.task_losses(state.streams["policy"], kw)
        values = self.check_losses(losses, state, it)
        reg = self.model.policy_regularizer(**(reg_kwargs or {}))
        total = sum(lambdas[t] * losses[t] for t in self.tasks) + reg_weight * reg
        total = total + sum(self.aux.values())
        total.backward()
        average_gradients(list(self.model.policy_parameters()), self.world)
        opt.step()
        logs = {f"policy_loss/{t}": v for t, v in values.items()}
        logs["policy_reg"] = float(reg.detach())
        return logs

    def task_losses(self, streams: Mapping[str, Any], kw: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Each task's criterion on the next batch of its stream, forward run with ``kw``."""
        losses = {}
        self.aux = {}
        for task in self.tasks:
            x, y = split_batch(streams[task].next(), task)
            x, y = move_to(x, self.device), move_to(y, self.device)
            out = self.model(x, task=task, **kw)
            losses[task] = self.criteria[task](out, y)
            aux = self.aux_losses.collect()
            if aux:
                self.aux[task] = cast(torch.Tensor, sum(aux.values()))
        return losses

    def _aux_logs(self) -> dict[str, float]:
        return {f"aux_loss/{t}": float(v.detach()) for t, v in self.aux.items()}

    def check_losses(self, losses: Mapping[str, torch.Tensor], state: TrainingState, it: int) -> dict[str, float]:
        """The losses averaged over processes; :class:`TrainingError` naming the phase, task,
        iteration and last good checkpoint when one is not finite."""
        local = torch.stack([losses[t].detach().float().reshape(()) for t in self.tasks])
        vals = all_reduce_mean(local, self.world).tolist()
        for task, v in zip(self.tasks, vals):
            if not math.isfinite(v):
                kept = state.last_checkpoint or "none written yet"
                raise TrainingError(f"{state.run}: loss of task '{task}' is {v} at iteration {it + 1}; "
                                    f"stopped without saving; last good checkpoint: {kept}")
        return dict(zip(self.tasks, vals))

    def _shared(self, params: list[nn.Parameter]) -> list[nn.Parameter]:
        head_ids = {id(p) for head in self.model.heads.values() for p in head.parameters()}
        return [p for p in params if id(p) not in head_ids]


def loss_lambdas(loss_lambda: Mapping[str, float] | None, tasks: Sequence[str]) -> dict[str, float]:
    """λ per task (default 1); :class:`ConfigError` for a name that is neither a task nor ``policy``."""
    loss_lambda = dict(loss_lambda or {})
    unknown = [k for k in loss_lambda if k != "policy" and k not in tasks]
    if unknown:
        raise ConfigError(f"loss_lambda names task(s) {unknown} that have no criterion", key="loss_lambda")
    return {t: float(loss_lambda.get(t, 1.0)) for t in tasks}


@contextmanager
def frozen(params: Iterable[nn.Parameter]) -> Iterator[None]:
    """Temporarily stop gradients for ``params`` (saves the backward work of the other optimiser)."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
