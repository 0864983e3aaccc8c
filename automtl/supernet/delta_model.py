"""``DeltaModel``: separate task networks (e.g. exported ViT-MVT ones) whose sub-tasks are sparse
deltas on the base task's, with the model contract the Trainer and the delta phases need.

:class:`~automtl.delta.DeltaNetworks` puts the deltas on; this adds what training a fixed
structure takes: policy layers (the delta layers), the one policy it runs (the base shares, every
other task takes ``delta`` at every delta layer), weight / policy parameters, ``count_params``
with the deltas' non-zeros only, and state dicts whose delta layout follows the saved one.

Example::

    model = DeltaModel.from_multitask(multi_task_vit, base="segment_semantic")
    policy = model.delta_policy()
    trainer = Trainer(model, train, val, criteria, metrics)
    trainer.delta_train(iters=100, reload=policy)
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
from torch import nn

from automtl.delta import DeltaLayer, DeltaNetworks, WeightDelta
from automtl.errors import ModelError, PolicyError
from automtl.supernet.policy import DELTA, Policy

#: the stages the Trainer names; all of them run the one fixed structure
STAGES = ("pre", "mtl", "fixed", "common")


class DeltaModel(DeltaNetworks):
    """Task networks with fixed deltas, trainable by :class:`automtl.train.Trainer` (the
    ``MTLModel`` contract); arguments as :class:`~automtl.delta.DeltaNetworks`."""

    def __init__(self, nets: Mapping[str, nn.Module], base: str, **kwargs: Any) -> None:
        super().__init__(nets, base, **kwargs)
        self._layer_set = frozenset(self.layer_names)
        self._policy: Policy | None = None

    # ---- the policy contract --------------------------------------------------------------------
    @property
    def policy_layers(self) -> list[str]:
        """The delta layers (module names in the base network)."""
        return list(self.layer_names)

    @property
    def delta_base(self) -> str:
        """The base task (every other task is a delta on it)."""
        return self.base

    @property
    def heads(self) -> dict[str, nn.Module]:
        """Each task network's ``head`` (an empty module for a network without one)."""
        heads = {t: getattr(self.nets[t], "head", None) for t in self.tasks}
        return {t: h if isinstance(h, nn.Module) else nn.Module() for t, h in heads.items()}

    def skip_allowed(self, layer: str) -> bool:
        """Never: a task network computes every layer."""
        return False

    def delta_allowed(self, layer: str, task: str) -> bool:
        """Whether ``task`` has a delta at ``layer`` (every task but the base, at every delta layer)."""
        return layer in self._layer_set and task in self.tasks and task != self.base

    def delta_policy(self) -> Policy:
        """The policy this model runs: the base shares, every other task takes ``delta``."""
        return Policy.delta(self, self.base)

    def check_policy(self, policy: Policy) -> Policy:
        """``policy`` if this model runs it (:class:`PolicyError` naming the first misfit otherwise)."""
        if not isinstance(policy, Policy):
            raise PolicyError(f"expected a Policy, got {type(policy).__name__}")
        policy.validate(self)
        for layer in policy.layers:
            for t, c in policy[layer].items():
                if (c == DELTA) != (t != self.base):
                    raise PolicyError(f"a DeltaModel runs one fixed policy: every task but the base "
                                      f"'{self.base}' takes 'delta' at every delta layer (model.delta_policy()); "
                                      f"'{t}' takes '{c}' at '{layer}'")
        return policy

    def set_policy(self, policy: Policy | None) -> None:
        """Remember ``policy`` (checked; it must be :meth:`delta_policy` up to the base's choice)."""
        self._policy = self.check_policy(policy) if policy is not None else None

    @property
    def policy(self) -> Policy | None:
        """The policy set last (None before)."""
        return self._policy

    def argmax_policy(self) -> Policy:
        """:meth:`delta_policy` (there are no policy logits)."""
        return self.delta_policy()

    def policy_parameters(self) -> Iterator[nn.Parameter]:
        """None: the structure is fixed."""
        return iter(())

    def policy_regularizer(self, **_: Any) -> torch.Tensor:
        """Zero (no policy logits)."""
        return torch.zeros(())

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter: the task networks and the deltas."""
        return self.parameters()

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, x: Any, task: str | None = None, *, stage: str = "fixed", policy: Policy | None = None,
                **_: Any) -> Any:
        """One task's output (all tasks' when ``task`` is None); ``stage`` and ``policy`` are
        checked but change nothing (``tau`` / ``hard`` are ignored)."""
        if stage not in STAGES:
            raise ModelError(f"unknown stage {stage!r}; use one of {STAGES}")
        if policy is not None and policy is not self._policy:
            self.check_policy(policy)
        return super().forward(x, task)

    # ---- deltas ---------------------------------------------------------------------------------
    def weight_delta(self, layer: str, task: str) -> WeightDelta:
        """The weight delta of ``task`` at ``layer`` (:class:`PolicyError` where it has none)."""
        if not self.delta_allowed(layer, task):
            raise PolicyError(f"task '{task}' has no delta at layer '{layer}' (the base is '{self.base}')")
        return cast(DeltaLayer, self.nets[task].get_submodule(layer)).delta

    def weight_deltas(self, policy: Policy | None = None) -> list[WeightDelta]:
        """Every weight delta, by layer then task (``policy``, if given, is checked first)."""
        if policy is not None:
            self.check_policy(policy)
        return [self.weight_delta(layer, t) for layer in self.layer_names for t in self.tasks if t != self.base]

    def adopt_state_layout(self, state: Mapping[str, Any]) -> None:
        """Give every weight delta the layout ``state`` saved (sparse support or dense), so a
        state dict written after any training step loads; call before checking or loading."""
        for name, module in self.named_modules():
            if isinstance(module, WeightDelta):
                module.adopt(state, f"{name}.")

    def count_params(self, policy: Policy | None = None) -> dict[str, int]:
        """Parameters per task and ``"total"`` (each counted once): a sub-task counts the base
        network it reads, its own other parameters and only its deltas' non-zeros (stored sparse)."""
        if policy is not None:
            self.check_policy(policy)
        base_params = {id(p): p.numel() for p in self.nets[self.base].parameters()}
        base_n = sum(base_params.values())
        out, seen, total = {self.base: base_n}, set(base_params), base_n
        for t in self.tasks:
            if t == self.base:
                continue
            deltas = [layer.delta for layer in self.delta_layers(t)]
            in_delta = {id(p) for d in deltas for p in d.parameters()}
            own = {id(p): p.numel() for p in self.nets[t].parameters() if id(p) not in in_delta}
            nonzero = sum(d.nonzero() for d in deltas)
            out[t] = base_n + sum(n for i, n in own.items() if i not in base_params) + nonzero
            total += sum(n for i, n in own.items() if i not in seen) + nonzero
            seen |= set(own)
        out["total"] = total
        return out
