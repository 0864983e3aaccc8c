"""Trunks: multi-task backbones that hand a decoder one feature map per level and task, and
carry the per-layer share/specialize policy the trainer learns and fixes.

* :class:`AutoMTLTrunk` — AutoMTL's supernet (:class:`~automtl.supernet.MTLModel`) over a CNN
  (any ``nn.Module`` torch.fx traces, a prototxt or a :class:`~automtl.graph.Graph`) whose
  chosen stage ends are its outputs: every layer × task chooses share / specialize / skip.
* :class:`ViTMVTTrunk` — the ViT-MVT supernet's ``forward_features``: every adaptive linear ×
  task chooses share / specialize (its learned sharing scores are the policy parameters).

Both follow :class:`FeatureTrunk`, which :class:`~automtl.models.mlore.MLoReModel` relies on.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from automtl.errors import ConfigError, PolicyError, UnknownTaskError
from automtl.graph import Graph
from automtl.models.levels import pick_levels, tap_graph_levels, tap_levels
from automtl.supernet import MTLModel, Policy
from search_spaces.vit_mvt import LINEARS

__all__ = ["AutoMTLTrunk", "FeatureTrunk", "LevelTaps", "ViTMVTTrunk"]


@runtime_checkable
class FeatureTrunk(Protocol):
    """Per-task multi-level features plus the policy members of the ``MTLModel`` contract."""

    tasks: list[str]
    channels: list[int]

    @property
    def policy_layers(self) -> list[str]: ...

    @property
    def policy(self) -> Policy | None: ...

    def skip_allowed(self, layer: str) -> bool: ...

    def features(self, x: torch.Tensor, task: str, *, stage: str = "mtl", tau: float = 5.0,
                 hard: bool = False, policy: Policy | None = None) -> list[torch.Tensor]: ...

    def features_all(self, x: torch.Tensor, policy: Policy | None = None,
                     tasks: Sequence[str] | None = None) -> dict[str, list[torch.Tensor]]: ...

    def weight_parameters(self) -> Iterator[nn.Parameter]: ...

    def policy_parameters(self) -> Iterator[nn.Parameter]: ...

    def policy_regularizer(self, **kwargs: Any) -> torch.Tensor: ...

    def argmax_policy(self) -> Policy: ...

    def sample_policy(self, *, seed: int | None = None, temperature: float = 1.0) -> Policy: ...

    def set_policy(self, policy: Policy | None) -> None: ...

    def count_params(self, policy: Policy) -> dict[str, int]: ...


class LevelTaps(nn.Module):
    """The "head" of every task of the inner ``MTLModel``: hands its levels on as a tuple."""

    def forward(self, *feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(feats)


class AutoMTLTrunk(nn.Module):
    """AutoMTL's multi-task supernet over a CNN, returning the chosen stage ends of each task.

    Args:
        backbone: an ``nn.Module`` (traced with torch.fx; its weights are copied), a prototxt
            path or a :class:`~automtl.graph.Graph`.
        tasks: the task names.
        levels: indices into the backbone's stage ends (the last layer at each spatial size;
            negative counts from the end; None: the last four).
        input_shape: example input ``(N, C, H, W)`` for tracing and shapes.
        bn_per_task: every task gets its own BatchNorms (AutoMTL's default).
    """

    def __init__(self, backbone: Any, tasks: Sequence[str], *, levels: Sequence[int] | None = None,
                 input_shape: Sequence[int] = (1, 3, 224, 224), bn_per_task: bool = True) -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        source: Any
        if isinstance(backbone, nn.Module):
            source, self.level_names, self.channels = tap_levels(backbone, shape, levels)
        elif isinstance(backbone, (str, os.PathLike, Graph)):
            if isinstance(backbone, Graph):
                graph = backbone.copy()
            else:
                from automtl.graph import load_prototxt

                graph = load_prototxt(backbone)
            for name in graph.inputs:
                graph[name].attrs["shape"] = shape
            source, self.channels = tap_graph_levels(graph, levels)
            self.level_names = list(source.outputs)
        else:
            raise ConfigError(f"must be an nn.Module, a prototxt path or a Graph, not {type(backbone).__name__}",
                              key="model.backbone")
        self.tasks: list[str] = list(tasks)
        self.net = MTLModel(source, {t: LevelTaps() for t in self.tasks}, bn_per_task=bn_per_task,
                            input_shape=shape)

    @property
    def policy_layers(self) -> list[str]:
        return self.net.policy_layers

    @property
    def policy(self) -> Policy | None:
        return self.net.policy

    def skip_allowed(self, layer: str) -> bool:
        return self.net.skip_allowed(layer)

    def features(self, x: torch.Tensor, task: str, *, stage: str = "mtl", tau: float = 5.0,
                 hard: bool = False, policy: Policy | None = None) -> list[torch.Tensor]:
        """The levels of ``task`` under ``stage`` (as :meth:`MTLModel.forward`)."""
        return list(self.net(x, task=task, stage=stage, tau=tau, hard=hard, policy=policy))

    def features_all(self, x: torch.Tensor, policy: Policy | None = None,
                     tasks: Sequence[str] | None = None) -> dict[str, list[torch.Tensor]]:
        """Every task's levels under a fixed policy, each shared computation run once."""
        return {t: list(f) for t, f in self.net.forward_all(x, policy, tasks=tasks).items()}

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        return self.net.weight_parameters()

    def policy_parameters(self) -> Iterator[nn.Parameter]:
        return self.net.policy_parameters()

    def policy_regularizer(self, **kwargs: Any) -> torch.Tensor:
        return self.net.policy_regularizer(**kwargs)

    def argmax_policy(self) -> Policy:
        return self.net.argmax_policy()

    def sample_policy(self, *, seed: int | None = None, temperature: float = 1.0) -> Policy:
        return self.net.sample_policy(seed=seed, temperature=temperature)

    def set_policy(self, policy: Policy | None) -> None:
        self.net.set_policy(policy)

    def count_params(self, policy: Policy) -> dict[str, int]:
        """Backbone parameters a deployment of ``policy`` needs (per task and ``"total"``)."""
        return self.net.count_params(policy)


class ViTMVTTrunk(nn.Module):
    """The ViT-MVT supernet as a trunk: ``forward_features`` after the chosen blocks per task.

    Its policy layers are the adaptive linears ``blocks.<i>.<linear>`` of the active depth;
    ``share`` uses the shared weight, ``specialize`` the task's own (skip is not allowed). In
    the ``pre``/``mtl`` stages the supernet's learned sharing scores decide (score > 0.5 →
    share; they are the policy parameters), in ``fixed`` the policy does.

    Args:
        space: a multi-task :class:`search_spaces.vit_mvt.ViTMVTSpace` serving ``tasks``.
        levels: block indices (negative from the end; None: four blocks evenly spread, the
            last included — MLoRE's three intermediate blocks and the last).
        arch: architecture genes (depth, width, heads, MLP ratios) without sharing genes
            (None: the largest subnet).
    """

    def __init__(self, space: Any, *, levels: Sequence[int] | None = None,
                 arch: Mapping[str, Any] | None = None, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        from search_spaces.vit_mvt import build_supernet

        self.tasks = list(space.tasks)
        if len(self.tasks) < 2:
            raise ConfigError("the ViT-MVT trunk needs at least two tasks (its policy chooses what they share)",
                              key="tasks", value=self.tasks)
        genes = dict(arch) if arch is not None else {k: v for k, v in space.largest().items()
                                                      if not k.startswith("share.")}
        sharing = sorted(k for k in genes if k.startswith("share."))
        if sharing:
            raise ConfigError("architecture genes only: the sharing comes from the policy",
                              key=f"model.backbone.arch.{sharing[0]}")
        self.net = build_supernet(space, drop_path_rate=drop_path_rate)
        self.net.set_arch(genes)
        self._genes = genes
        depth = self.net.arch.depth
        if levels is None:
            levels = sorted({max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4)})
        self.levels = pick_levels([f"block {i}" for i in range(depth)], levels, what="blocks")
        self.channels = [self.net.arch.embed] * len(self.levels)
        order = {lin: i for i, lin in enumerate(LINEARS)}
        self._layers = sorted({k.rsplit(".", 1)[0] for k in self.net.arch_genes() if k.startswith("share.")},
                              key=lambda k: (int(k.split(".")[1]), order.get(k.split(".")[2], len(order))))
        self._scores = {(layer, t): p for layer in self._layers for t in self.tasks
                        for p in [self._score(layer, t)]}
        self._policy: Policy | None = None
        self._active: Any = None  # the sharing the supernet is configured with (None: learned)

    def _score(self, layer: str, task: str) -> nn.Parameter:
        _, i, lin = layer.split(".")
        return self.net.get_parameter(f"blocks.{i}.{lin}.score.{task}")

    # ---- policy -----------------------------------------------------------------------------
    @property
    def policy_layers(self) -> list[str]:
        """``blocks.<i>.<linear>`` for every adaptive linear of the active depth."""
        return [f"blocks.{k.split('.')[1]}.{k.split('.')[2]}" for k in self._layers]

    @property
    def policy(self) -> Policy | None:
        return self._policy

    def skip_allowed(self, layer: str) -> bool:
        if layer not in self.policy_layers:
            raise PolicyError(f"model has no policy layer '{layer}'")
        return False

    def set_policy(self, policy: Policy | None) -> None:
        self._policy = policy.validate(self) if policy is not None else None

    def _share_probs(self) -> torch.Tensor:
        """``P(share)`` per layer and task: the scores clamped to [0, 1] (> 0.5 ↔ share)."""
        return torch.stack([torch.stack([self._scores[(k, t)].detach() for t in self.tasks])
                            for k in self._layers]).float().clamp(0.0, 1.0)

    def argmax_policy(self) -> Policy:
        """The decisions of the learned scores."""
        probs = self._share_probs()
        return Policy({name: {t: "share" if bool(probs[i, j] > 0.5) else "specialize"
                              for j, t in enumerate(self.tasks)}
                       for i, name in enumerate(self.policy_layers)})

    def sample_policy(self, *, seed: int | None = None, temperature: float = 1.0) -> Policy:
        """Each choice drawn with ``P(share)`` = the clamped score, sharpened by ``1/temperature``."""
        p = self._share_probs().clamp(1e-6, 1 - 1e-6) ** (1.0 / temperature)
        q = (1 - self._share_probs()).clamp(1e-6, 1 - 1e-6) ** (1.0 / temperature)
        probs = (p / (p + q)).tolist()
        rng = random.Random(seed)
        return Policy({name: {t: "share" if rng.random() < probs[i][j] else "specialize"
                              for j, t in enumerate(self.tasks)}
                       for i, name in enumerate(self.policy_layers)})

    def policy_parameters(self) -> Iterator[nn.Parameter]:
        """The sharing scores of the active layers."""
        yield from self._scores.values()

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Everything but the sharing scores."""
        return (p for name, p in self.net.named_parameters() if ".score." not in name)

    def policy_regularizer(self, *, sharpness: float = 1.0, depth_weighted: bool = True,
                           tasks: Sequence[str] | None = None, **_: Any) -> torch.Tensor:
        """AutoMTL's push towards sharing in low layers: ``Σ c_l · softplus(s·(0.5 − score))``
        with ``c_l = (D − block)/D`` (1 without depth weighting)."""
        depth = self.net.arch.depth
        terms = []
        for layer in self._layers:
            c = (depth - int(layer.split(".")[1])) / depth if depth_weighted else 1.0
            for t in tasks or self.tasks:
                terms.append(c * F.softplus(sharpness * (0.5 - self._scores[(layer, t)])))
        return torch.stack(terms).sum()

    def _sharing(self, policy: Policy) -> dict[str, str]:
        return {f"share.{layer.split('.', 1)[1]}.{t}": ("shared" if policy.choice(layer, t) == "share"
                                                        else "specific")
                for layer in self.policy_layers for t in self.tasks}

    def _configure(self, policy: Policy | None) -> None:
        key = policy.key() if policy is not None else None
        if key != self._active:
            self.net.set_arch(self._genes, self._sharing(policy) if policy is not None else None)
            self._active = key

    # ---- features ---------------------------------------------------------------------------
    def features(self, x: torch.Tensor, task: str, *, stage: str = "mtl", tau: float = 5.0,
                 hard: bool = False, policy: Policy | None = None) -> list[torch.Tensor]:
        """The chosen blocks' maps of ``task``: learned sharing in ``pre``/``mtl``, the policy in
        ``fixed``, everything shared in ``common``."""
        if task not in self.tasks:
            raise UnknownTaskError(f"unknown task {task!r}; the model's tasks are {self.tasks}")
        if stage == "fixed":
            chosen = policy if policy is not None else self._policy
            if chosen is None:
                raise PolicyError("no policy: pass policy=… or call model.set_policy(policy) first")
            self._configure(chosen.validate(self))
        elif stage == "common":
            self._configure(Policy.all(self, "share"))
        elif stage in ("pre", "mtl"):
            self._configure(None)
        else:
            raise ConfigError(f"unknown stage {stage!r}; use one of ('pre', 'mtl', 'fixed', 'common')",
                              key="stage")
        return self.net.forward_features(x, task, out_indices=self.levels)

    def features_all(self, x: torch.Tensor, policy: Policy | None = None,
                     tasks: Sequence[str] | None = None) -> dict[str, list[torch.Tensor]]:
        """Every task's levels under a fixed policy."""
        return {t: self.features(x, t, stage="fixed", policy=policy) for t in (tasks or self.tasks)}

    def count_params(self, policy: Policy) -> dict[str, int]:
        """Backbone parameters under ``policy``: the space's exact count without the supernet's
        own task heads and final norm, which ``forward_features`` does not use."""
        counts = self.net.space.count_params(self._genes, sharing=self._sharing(policy.validate(self)))
        e = self.net.arch.embed
        unused = {t: self.net.head_w[t][:, :e].numel() + self.net.head_b[t].numel() for t in self.tasks}
        out = {t: counts[t] - unused[t] - 2 * e for t in self.tasks}
        out["total"] = counts["total"] - sum(unused.values()) - 2 * e
        return out
