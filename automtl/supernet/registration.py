"""Registers the AutoMTL multi-task supernet in :data:`automtl.registry.MODELS` (``MTLModel``)
and builds it from a config's ``model`` section."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automtl.errors import ConfigError
from automtl.registry import MODELS, build
from automtl.supernet.model import MTLModel


def _shape(value: Any) -> tuple[int, int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ConfigError("must be four positive integers (N, C, H, W)", key="model.input_shape",
                          value=value)
    n, c, h, w = value
    return n, c, h, w


@MODELS.register_module("MTLModel")
def build_mtl_model(tasks: Sequence[str], *, backbone: Any,
                    head: Mapping[str, Any] | None = None,
                    input_shape: Sequence[int] = (1, 3, 32, 32), bn_per_task: bool = True,
                    in_channels: int | None = None, num_classes: int | None = None) -> MTLModel:
    """An :class:`MTLModel` of ``backbone`` (any form :func:`automtl.backbones.build_backbone`
    takes) with one head per task (``head``: a registered head type and its settings, without
    ``in_channels``/``num_classes``, which come from the backbone and each task)."""
    from automtl.backbones import build_backbone
    from automtl.heads import build_task_heads

    shape = _shape(input_shape)
    if not isinstance(bn_per_task, bool):
        raise ConfigError("must be True or False", key="model.bn_per_task", value=bn_per_task)
    net = build_backbone(backbone, key="model.backbone")
    if in_channels is None:
        probe = MTLModel(net, {tasks[0]: nn.Identity()}, input_shape=shape).eval()
        with torch.no_grad():
            in_channels = int(probe(torch.zeros(shape), stage="common").shape[1])
    if head is not None and not isinstance(head, Mapping):
        raise ConfigError("must be a dict with a 'type'", key="model.head", value=head)
    spec = dict(head or {"type": "ConvHead"})
    head_type = spec.pop("type", "ConvHead")
    heads = build_task_heads(list(tasks), in_channels, head=head_type, num_classes=num_classes,
                             **spec)
    return MTLModel(net, heads, bn_per_task=bn_per_task, input_shape=shape)


def build_model(cfg: Mapping[str, Any], tasks: Sequence[str], *, key: str = "model") -> nn.Module:
    """The model a config's ``model`` section describes (``type`` defaults to ``MTLModel``)."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"must be a dict, got {type(cfg).__name__}", key=key, value=cfg)
    return build(MODELS, {"type": "MTLModel", **dict(cfg)}, list(tasks), key=key)
