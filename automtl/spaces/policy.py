"""The AutoMTL policy space: one categorical gene per weighted layer × task.

Each gene ``"<layer>/<task>"`` is ``share``, ``specialize`` or ``skip`` (skip only where the
model allows it), or ``delta`` where the model has deltas for the task on its base task
(``MTLModel.add_deltas``; the base then shares or specializes those layers). Parameters are
the exact count of the deployed branched model, ``MTLModel.count_params(policy)`` (shared
weights counted once, deltas by their non-zero entries), so an evolutionary search
can put AutoMTL policies under the same budget as ViT-MVT architectures.

Example::

    from automtl.spaces import PolicySearchSpace
    space = PolicySearchSpace(model)                     # model: an automtl MTLModel
    cand = space.sample(random.Random(0))
    space.count_params(cand)                             # {task: n, "total": n}
    space.to_policy(cand).save("policy.json")
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automtl.errors import ArchError, ConfigError, PolicyError
from automtl.spaces.base import Candidate, SupernetSpace

if TYPE_CHECKING:  # the supernet (and torch) load only when a policy space is built
    import torch
    from torch import nn

    from automtl.supernet import MTLModel, Policy

SEP = "/"


class PolicySearchSpace(SupernetSpace):
    """Share/specialize/skip per layer and task of an :class:`~automtl.supernet.MTLModel`.

    Args:
        model: the multi-task supernet (its weights are inherited by every candidate).
        allow_skip: offer ``skip`` where the model allows it (False: share/specialize only).
        allow_delta: offer ``delta`` where the model has deltas (default: when it has any).
    """

    name = "automtl_policy"
    best_filename = "policy.json"

    def __init__(self, model: MTLModel, *, allow_skip: bool = True, allow_delta: bool | None = None) -> None:
        self.model = model
        self.tasks = tuple(model.tasks)
        self.layers = tuple(model.policy_layers)
        self.allow_skip = allow_skip
        base = getattr(model, "delta_base", None)
        self.base: str | None = base if allow_delta is not False else None
        if allow_delta and base is None:
            raise ConfigError("the model has no deltas (MTLModel.add_deltas)", key="allow_delta")
        self._choices: dict[str, tuple[str, ...]] = {}
        from automtl.supernet import CHOICES

        for layer in self.layers:
            opts = tuple(c for c in CHOICES
                         if c != "skip" or (allow_skip and model.skip_allowed(layer)))
            deltas = [t for t in self.tasks if self.base is not None and model.delta_allowed(layer, t)]
            for t in self.tasks:
                own = opts
                if t in deltas:
                    own = (*opts, "delta")
                elif deltas and t == self.base:
                    own = tuple(c for c in opts if c != "skip")  # a delta needs the base's layer
                self._choices[self.gene(layer, t)] = own
        self._counts: dict[tuple[str, ...], dict[str, int]] = {}

    @staticmethod
    def gene(layer: str, task: str) -> str:
        """The gene name of ``layer`` × ``task``."""
        return f"{layer}{SEP}{task}"

    def gene_choices(self) -> Mapping[str, Sequence[Any]]:
        """Every gene with its allowed choices (skip only where the layer allows it)."""
        return dict(self._choices)

    # -- policies ----------------------------------------------------------------------
    def to_policy(self, candidate: Candidate) -> Policy:
        """The :class:`Policy` a candidate stands for."""
        from automtl.supernet import Policy

        self.validate(candidate)
        return Policy({layer: {t: candidate[self.gene(layer, t)] for t in self.tasks}
                       for layer in self.layers}, base=self.base)

    def from_policy(self, policy: Policy) -> Candidate:
        """The candidate of ``policy`` (validated against the model)."""
        try:
            policy.validate(self.model)
        except PolicyError as exc:
            raise ArchError(f"policy does not fit the model: {exc}") from exc
        cand = {self.gene(layer, t): policy.choice(layer, t) for layer in self.layers
                for t in self.tasks}
        self.validate(cand)
        return cand

    # -- protocol ----------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Candidate:
        """Every gene drawn uniformly from its choices."""
        return {g: rng.choice(opts) for g, opts in self._choices.items()}

    def mutate(self, candidate: Candidate, rng: random.Random, *, p_layer: float = 0.2,
               p_global: float = 0.4) -> Candidate:
        """Each gene redrawn with probability ``p_layer`` (there are no global genes)."""
        return {g: (rng.choice(opts) if rng.random() < p_layer else candidate[g])
                for g, opts in self._choices.items()}

    def crossover(self, a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
        """Each gene from ``a`` or ``b`` with probability 1/2."""
        return {g: (a[g] if rng.random() < 0.5 else b[g]) for g in self._choices}

    def validate(self, candidate: Candidate) -> None:
        """:class:`ArchError` naming the first missing, unknown or invalid gene."""
        if not isinstance(candidate, Mapping):
            raise ArchError(f"a candidate must be a dict of genes, got {type(candidate).__name__}")
        for g, opts in self._choices.items():
            if g not in candidate:
                raise ArchError("missing gene", key=g)
            if candidate[g] not in opts:
                raise ArchError(f"choice {candidate[g]!r} not allowed here; use one of "
                                f"{list(opts)}", key=g, value=candidate[g])
        extra = sorted(set(candidate) - set(self._choices))
        if extra:
            raise ArchError("no such layer/task in the model", key=extra[0])

    def count_params(self, candidate: Candidate) -> dict[str, int]:
        """Exact parameters of the branched model of this policy (cached per candidate)."""
        sig = tuple(candidate[g] if g in candidate else "" for g in self._choices)
        hit = self._counts.get(sig)
        if hit is None:
            hit = self.model.count_params(self.to_policy(candidate))
            if len(self._counts) > 100_000:
                self._counts.clear()
            self._counts[sig] = hit
        return dict(hit)

    def _uniform(self, choice: str) -> Candidate:
        return {g: (choice if choice in opts else "share") for g, opts in self._choices.items()}

    def largest(self) -> Candidate:
        """Everything specialised (the biggest deployment; sandwich training's top subnet)."""
        return self._uniform("specialize")

    def smallest(self) -> Candidate:
        """Skip wherever allowed, share elsewhere, or all-share if that is smaller."""
        skip, share = self._uniform("skip"), self._uniform("share")
        return skip if self.count_params(skip)["total"] <= self.count_params(share)["total"] \
            else share

    def param_range(self) -> tuple[int, int]:
        """Smallest: skip wherever allowed (else share) or all-share, whichever is smaller;
        largest: everything specialised (one private copy of every layer per task)."""
        return (self.count_params(self.smallest())["total"],
                self.count_params(self.largest())["total"])

    def save(self, candidate: Candidate, path: str | os.PathLike[str]) -> Path:
        """Write the candidate as an AutoMTL policy JSON (``Policy.save``)."""
        return self.to_policy(candidate).save(path)

    # -- the supernet: the MTLModel itself --------------------------------------------
    def build_supernet(self, **kwargs: Any) -> nn.Module:
        """The space's :class:`~automtl.MTLModel` (it takes no builder arguments)."""
        if kwargs:
            raise ConfigError(f"the policy space's supernet is its MTLModel and takes no "
                              f"arguments, got {sorted(kwargs)}", key="supernet")
        return self.model

    def activate(self, net: nn.Module, candidate: Candidate) -> None:
        """Fix ``candidate``'s policy in the model."""
        net.set_policy(self.to_policy(candidate))  # type: ignore[operator]

    def forward(self, net: nn.Module, x: torch.Tensor, task: str) -> torch.Tensor:
        """``task``'s output through the fixed policy."""
        return net(x, task=task, stage="fixed")


def build_policy_space(*, backbone: Any, heads: Mapping[str, Any], allow_skip: bool = True,
                       bn_per_task: bool = True, input_shape: Sequence[int] | None = None,
                       checkpoint: str | None = None) -> PolicySearchSpace:
    """A policy space from a config: ``backbone`` (any form :func:`automtl.backbones.build_backbone`
    takes: ``"torchvision:resnet18"``, a prototxt path, ``dict(type=…)``), ``heads``
    (``{task: head config}`` for ``automtl.heads.build_head``), optional trained ``checkpoint``
    (state dict of the ``MTLModel``)."""
    from automtl.backbones import build_backbone
    from automtl.heads import build_head
    from automtl.io import safe_load
    from automtl.supernet import MTLModel

    net = build_backbone(backbone, key="space.backbone")
    built = {t: build_head(dict(cfg)) for t, cfg in heads.items()}
    model = MTLModel(net, built, bn_per_task=bn_per_task, input_shape=input_shape)
    if checkpoint is not None:
        state = safe_load(checkpoint)
        model.load_state_dict(state.get("state_dict", state))
    return PolicySearchSpace(model, allow_skip=allow_skip)
