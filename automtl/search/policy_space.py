"""The AutoMTL policy space: one categorical gene per weighted layer × task.

Each gene ``"<layer>/<task>"`` is ``share``, ``specialize`` or ``skip`` (skip only where the
model allows it). Parameters are the exact count of the deployed branched model,
``MTLModel.count_params(policy)`` (shared weights counted once), so an evolutionary search
can put AutoMTL policies under the same budget as ViT-MVT architectures.

Example::

    from automtl.search.policy_space import PolicySearchSpace
    space = PolicySearchSpace(model)                     # model: an automtl MTLModel
    cand = space.sample(random.Random(0))
    space.count_params(cand)                             # {task: n, "total": n}
    space.to_policy(cand).save("policy.json")
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from automtl.errors import ArchError, ConfigError, PolicyError
from automtl.search.space import Candidate, SearchSpace
from automtl.supernet import CHOICES, MTLModel, Policy

SEP = "/"


class PolicySearchSpace(SearchSpace):
    """Share/specialize/skip per layer and task of an :class:`~automtl.supernet.MTLModel`.

    Args:
        model: the multi-task supernet (its weights are inherited by every candidate).
        allow_skip: offer ``skip`` where the model allows it (False: share/specialize only).
    """

    name = "automtl_policy"
    best_filename = "policy.json"

    def __init__(self, model: MTLModel, *, allow_skip: bool = True) -> None:
        self.model = model
        self.tasks = tuple(model.tasks)
        self.layers = tuple(model.policy_layers)
        self.allow_skip = allow_skip
        self._choices: dict[str, tuple[str, ...]] = {}
        for layer in self.layers:
            opts = tuple(c for c in CHOICES
                         if c != "skip" or (allow_skip and model.skip_allowed(layer)))
            for t in self.tasks:
                self._choices[self.gene(layer, t)] = opts
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
        self.validate(candidate)
        return Policy({layer: {t: candidate[self.gene(layer, t)] for t in self.tasks}
                       for layer in self.layers})

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


def build_policy_space(*, backbone: Any, heads: Mapping[str, Any], allow_skip: bool = True,
                       bn_per_task: bool = True, input_shape: Sequence[int] | None = None,
                       checkpoint: str | None = None) -> PolicySearchSpace:
    """A policy space from a config: ``backbone`` (prototxt path or ``dict(type="torchvision",
    name="resnet18")``), ``heads`` (``{task: head config}`` for ``automtl.heads.build_head``),
    optional trained ``checkpoint`` (state dict of the ``MTLModel``)."""
    import torch

    from automtl.heads import build_head

    if isinstance(backbone, Mapping):
        spec = dict(backbone)
        if spec.pop("type", None) != "torchvision":
            raise ConfigError("backbone dict needs type='torchvision' and a model name",
                              key="space.backbone.type")
        import torchvision

        try:
            net = getattr(torchvision.models, spec.pop("name"))(weights=None, **spec)
        except (AttributeError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot build torchvision backbone: {exc}",
                              key="space.backbone.name") from exc
        backbone = torch.nn.Sequential(*list(net.children())[:-2])
    built = {t: build_head(dict(cfg)) for t, cfg in heads.items()}
    model = MTLModel(backbone, built, bn_per_task=bn_per_task, input_shape=input_shape)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    return PolicySearchSpace(model, allow_skip=allow_skip)
