"""``MLoReModel``: a multi-level trunk (AutoMTL's CNN supernet or ViT-MVT) with the MLoRE decoder
as the heads of every task; it follows the ``MTLModel`` contract, so the trainer, the config
runner (``type="MLoReModel"`` in a config's ``model``) and policy sampling use it unchanged.

Example::

    model = build_mlore_model(["segment_semantic", "depth_zbuffer"],
                              backbone=dict(type="TinyResNet", widths=(16, 32, 64)), levels=(0, 1, 2),
                              decoder=dict(channels=32, ranks=(8, 16, 24, 32), top_k=2),
                              input_shape=(1, 3, 32, 32))
    out = model(x, task="depth_zbuffer", stage="fixed", policy=Policy.all(model, "share"))
    deployed = model.reparameterize(Policy.all(model, "share"))   # fused decoder, eval only
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

import torch
from torch import nn

from automtl.errors import ConfigError, ModelError
from automtl.heads.mlore import MLoReDecoder
from automtl.heads.mlore_fused import FusedMLoReDecoder
from automtl.models.trunks import AutoMTLTrunk, FeatureTrunk, ViTMVTTrunk
from automtl.registry import HEADS, MODELS, SPACES, build
from automtl.supernet import Policy

__all__ = ["MLoReModel", "ReparameterizedMLoRe", "build_mlore_model"]

STAGES = ("pre", "mtl", "fixed", "common")


class MLoReModel(nn.Module):
    """A trunk giving each task one feature map per level, decoded by one :class:`MLoReDecoder`.

    ``model(x, task=, stage=, tau=, hard=, policy=)`` runs the trunk at ``stage`` (as
    :meth:`MTLModel.forward`; ``"common"`` returns the levels without decoding) and the decoder;
    the policy members are the trunk's; ``heads[task]`` holds the decoder parts only that task
    uses. The decoder's load-balancing loss reaches the trainer through ``auxiliary_losses``.
    """

    def __init__(self, trunk: FeatureTrunk, decoder: MLoReDecoder) -> None:
        super().__init__()
        if list(decoder.tasks) != list(trunk.tasks):
            raise ModelError(f"decoder tasks {decoder.tasks} differ from the trunk's {trunk.tasks}")
        if list(decoder.in_channels) != list(trunk.channels):
            raise ModelError(f"decoder levels {list(decoder.in_channels)} differ from the trunk's "
                             f"{list(trunk.channels)}")
        if not isinstance(trunk, nn.Module):
            raise ModelError(f"the trunk must be an nn.Module, not {type(trunk).__name__}")
        self.trunk: Any = trunk
        self.decoder = decoder
        self.tasks: list[str] = list(trunk.tasks)

    # ---- the MTLModel contract --------------------------------------------------------------
    @property
    def heads(self) -> dict[str, nn.Module]:
        """``{task: the decoder modules only that task uses}``."""
        return {t: self.decoder.task_modules(t) for t in self.tasks}

    @property
    def policy_layers(self) -> list[str]:
        return list(self.trunk.policy_layers)

    @property
    def policy(self) -> Policy | None:
        return self.trunk.policy

    def skip_allowed(self, layer: str) -> bool:
        return bool(self.trunk.skip_allowed(layer))

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """The trunk's weights and the decoder's (everything but the policy parameters)."""
        return chain(self.trunk.weight_parameters(), self.decoder.parameters())

    def policy_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.policy_parameters()

    def policy_regularizer(self, **kwargs: Any) -> torch.Tensor:
        return self.trunk.policy_regularizer(**kwargs)

    def argmax_policy(self) -> Policy:
        return self.trunk.argmax_policy()

    def sample_policy(self, *, seed: int | None = None, temperature: float = 1.0) -> Policy:
        return self.trunk.sample_policy(seed=seed, temperature=temperature)

    def set_policy(self, policy: Policy | None) -> None:
        self.trunk.set_policy(policy)

    def count_params(self, policy: Policy) -> dict[str, int]:
        """Parameters of a deployment of ``policy``: trunk plus decoder, per task and ``"total"``."""
        trunk, dec = self.trunk.count_params(policy), self.decoder.count_params()
        return {k: trunk[k] + dec[k] for k in (*self.tasks, "total")}

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, task: str | None = None, stage: str = "mtl", tau: float = 5.0,
                hard: bool = False, policy: Policy | None = None) -> Any:
        """The prediction of ``task`` (``stage="common"``: the shared levels, not decoded)."""
        if stage not in STAGES:
            raise ModelError(f"unknown stage {stage!r}; use one of {STAGES}")
        t = task if task is not None else (self.tasks[0] if stage == "common" else None)
        if t is None:
            raise ModelError(f"stage '{stage}' needs task=…; the model's tasks are {self.tasks}")
        feats = self.trunk.features(x, t, stage=stage, tau=tau, hard=hard, policy=policy)
        return feats if stage == "common" else self.decoder(feats, t)

    def forward_all(self, x: torch.Tensor, policy: Policy | None = None, *,
                    tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{task: prediction}`` under a fixed policy."""
        return self.decoder.forward_all(self.trunk.features_all(x, policy, tasks), tasks)

    def reparameterize(self, policy: Policy | None = None) -> ReparameterizedMLoRe:
        """An eval-only model: the trunk under ``policy`` (default: the set one) and the fused
        decoder (one 3×3 conv per block, task and image)."""
        chosen = policy if policy is not None else self.policy
        if chosen is None:
            raise ModelError("no policy: pass one or call model.set_policy(policy) first")
        return ReparameterizedMLoRe(self.trunk, self.decoder.eval().reparameterize(), chosen)


class ReparameterizedMLoRe(nn.Module):
    """The deployed form of an :class:`MLoReModel`: its trunk under a fixed policy and the fused
    decoder (shares the trunk's weights)."""

    def __init__(self, trunk: FeatureTrunk, decoder: FusedMLoReDecoder, policy: Policy) -> None:
        super().__init__()
        self.trunk: Any = trunk
        self.decoder = decoder
        self.policy = policy.validate(trunk)
        self.tasks = list(trunk.tasks)
        self.eval()

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.decoder(self.trunk.features(x, task, stage="fixed", policy=self.policy), task)

    def forward_all(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        return self.decoder.forward_all(self.trunk.features_all(x, self.policy, tasks), tasks)


def _input_shape(value: Any) -> tuple[int, int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ConfigError("must be four positive integers (N, C, H, W)", key="model.input_shape", value=value)
    n, c, h, w = value
    return n, c, h, w


def _trunk(tasks: list[str], backbone: Any, levels: Sequence[int] | None, input_shape: Sequence[int],
           bn_per_task: bool) -> FeatureTrunk:
    if isinstance(backbone, Mapping) and backbone.get("type") == "vit_mvt":
        spec = dict(backbone)
        spec.pop("type")
        arch = spec.pop("arch", None)
        drop_path = spec.pop("drop_path_rate", 0.0)
        for k in ("tasks", "num_outputs", "head_kinds"):
            if k in spec:
                raise ConfigError("set by the model (its tasks)", key=f"model.backbone.{k}", value=spec[k])
        space = build(SPACES, {"type": "vit_mvt", **spec, "tasks": tuple(tasks),
                               "num_outputs": {t: 1 for t in tasks}}, key="model.backbone")
        if arch is not None and not isinstance(arch, Mapping):
            raise ConfigError("must be a dict of architecture genes", key="model.backbone.arch", value=arch)
        return ViTMVTTrunk(space, levels=levels, arch=arch, drop_path_rate=drop_path)
    from automtl.backbones import build_backbone

    net = build_backbone(backbone, key="model.backbone")
    return AutoMTLTrunk(net, tasks, levels=levels, input_shape=input_shape, bn_per_task=bn_per_task)


@MODELS.register_module("MLoReModel")
def build_mlore_model(tasks: Sequence[str], *, backbone: Any, levels: Sequence[int] | None = None,
                      decoder: Mapping[str, Any] | None = None, input_shape: Sequence[int] = (1, 3, 32, 32),
                      bn_per_task: bool = True, num_classes: int | None = None) -> MLoReModel:
    """An :class:`MLoReModel` from a config's ``model`` section.

    ``backbone``: any form :func:`automtl.backbones.build_backbone` takes (an AutoMTL trunk;
    ``levels`` index its stage ends), or ``dict(type="vit_mvt", <space settings>, arch=None)``
    (a ViT-MVT trunk; ``levels`` are block indices). ``decoder``: :class:`MLoReDecoder`
    settings without ``in_channels``/``num_classes`` (they come from the trunk and the tasks).
    """
    from automtl.data.tasks import task_out_channels

    shape = _input_shape(input_shape)
    if not isinstance(bn_per_task, bool):
        raise ConfigError("must be True or False", key="model.bn_per_task", value=bn_per_task)
    if decoder is not None and not isinstance(decoder, Mapping):
        raise ConfigError("must be a dict of MLoReDecoder settings", key="model.decoder", value=decoder)
    spec = dict(decoder or {})
    for k in ("type", "in_channels", "num_classes"):
        if k in spec:
            raise ConfigError("set by the model (trunk levels and tasks)", key=f"model.decoder.{k}",
                              value=spec[k])
    names = list(tasks)
    trunk = _trunk(names, backbone, levels, shape, bn_per_task)
    classes = {t: task_out_channels(t, num_classes=num_classes) for t in names}
    dec = build(HEADS, {"type": "MLoReDecoder", **spec, "in_channels": list(trunk.channels),
                        "num_classes": classes}, key="model.decoder")
    return MLoReModel(trunk, dec)
