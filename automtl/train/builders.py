"""Turning config dicts into data loaders and an ``MTLModel`` (used by the runner and the demo)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from automtl.errors import ConfigError


def build_backbone(cfg: Any) -> Any:
    """A backbone from ``dict(type="TinyResNet", widths=...)``, ``dict(type="torchvision",
    name="resnet18")``, a prototxt path, an ``nn.Module`` or a ``Graph`` (returned as is)."""
    if not isinstance(cfg, Mapping):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    from automtl.train.zoo import BACKBONES

    if kind in BACKBONES:
        return BACKBONES[kind](**cfg)
    if kind == "torchvision":
        import torchvision

        name = cfg.pop("name", "resnet18")
        net = getattr(torchvision.models, name)(weights=None, **cfg)
        return nn.Sequential(*list(net.children())[:-2]) if name.startswith("resnet") else net.features
    if kind == "prototxt":
        return cfg["path"]
    raise ConfigError(f"unknown backbone type {kind!r}; use one of {sorted(BACKBONES)}, 'torchvision', "
                      "'prototxt'", key="model.backbone.type")


def build_model(cfg: Mapping[str, Any], tasks: Sequence[str]) -> nn.Module:
    """``MTLModel`` from ``dict(backbone=..., head=dict(type=..., ...), input_shape=..., bn_per_task=...)``.

    The head config omits ``in_channels`` and ``num_classes``: they come from the backbone
    output and each task.
    """
    import torch

    from automtl.heads import build_task_heads
    from automtl.supernet import MTLModel

    cfg = dict(cfg)
    if "backbone" not in cfg:
        raise ConfigError("missing", key="model.backbone")
    input_shape = tuple(cfg.get("input_shape", (1, 3, 32, 32)))
    backbone = build_backbone(cfg["backbone"])
    in_channels = cfg.get("in_channels")
    if in_channels is None:
        probe = MTLModel(backbone, {tasks[0]: nn.Identity()}, input_shape=input_shape)
        with torch.no_grad():
            in_channels = int(probe(torch.zeros(input_shape), stage="common").shape[1])
    head = dict(cfg.get("head", {"type": "ConvHead"}))
    head_type = head.pop("type", "ConvHead")
    heads = build_task_heads(list(tasks), in_channels, head=head_type, **head)
    return MTLModel(backbone, heads, bn_per_task=bool(cfg.get("bn_per_task", True)), input_shape=input_shape)


def build_data(cfg: Mapping[str, Any], tasks: Sequence[str], seed: int = 0) -> tuple[dict, dict]:
    """``(train_loaders, val_loaders)`` from ``dict(type="synthetic", size=..., n_train=..., ...)``."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "synthetic")
    if kind != "synthetic":
        raise ConfigError(f"unknown data type {kind!r}; the runner builds 'synthetic' data", key="data.type")
    from automtl.data.synthetic import make_loaders

    args = dict(size=32, n_train=512, n_val=128, batch_size=16, seed=seed)
    unknown = set(cfg) - set(args)
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}; use {sorted(args)}", key="data")
    args.update(cfg)
    return make_loaders(list(tasks), **args)
