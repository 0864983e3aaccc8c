"""One backbone builder for configs, spaces and tools: every spelling of a backbone in one place.

Accepted forms (``build_backbone(spec)``):

- an ``nn.Module`` or a :class:`~automtl.graph.Graph`: returned as it is;
- ``"torchvision:NAME"``: a zoo backbone (``deeplab_resnet34``, ``mobilenet_v2`` …) or any
  torchvision model cut into its trunk by output stride;
- ``"prototxt:PATH"`` or a path ending in ``.prototxt``: the Caffe network (path returned, so
  errors keep naming the file and line);
- ``"timm:NAME"``: a timm model's ``forward_features`` (when timm is installed);
- ``dict(type=NAME, **kwargs)``: anything registered in :data:`automtl.registry.BACKBONES`
  (``TinyResNet``, ``torchvision``, ``prototxt``, ``timm`` or a user's own class).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from automtl.backbones._tiny import TinyResNet
from automtl.backbones._trunk import trunk
from automtl.backbones._zoo import ZOO, torchvision_model, zoo_backbone
from automtl.errors import ConfigError
from automtl.registry import BACKBONES, build

PREFIXES = ("torchvision", "prototxt", "timm")

BACKBONES.register_module("TinyResNet", module=TinyResNet)


@BACKBONES.register_module("torchvision")
def torchvision_backbone(name: str = "resnet18", *, output_stride: int | None = None,
                         **kwargs: Any) -> nn.Module:
    """A zoo backbone by name, or torchvision model ``name`` cut by :func:`trunk`."""
    if name in ZOO and output_stride is None and not kwargs:
        return zoo_backbone(name)
    try:
        model = torchvision_model(name, full=True, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for torchvision model '{name}': {exc}",
                          key="backbone") from exc
    return trunk(model, output_stride=output_stride)


@BACKBONES.register_module("prototxt")
def prototxt_backbone(path: str) -> str:
    """A prototxt network (the path: :class:`~automtl.MTLModel` parses it with file/line errors)."""
    if not os.path.isfile(path):
        raise ConfigError("prototxt file not found", key="backbone.path", value=path)
    return path


class TimmFeatures(nn.Module):
    """A timm model's ``forward_features`` as a backbone (its classifier is never run)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)  # type: ignore[operator]


@BACKBONES.register_module("timm")
def timm_backbone(name: str, **kwargs: Any) -> nn.Module:
    """timm model ``name`` (never pretrained: nothing is downloaded) as a feature extractor."""
    try:
        import timm
    except ImportError as exc:
        raise ConfigError("timm is not installed (pip install -e '.[bench]')",
                          key="backbone.type", value="timm") from exc
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as exc:  # timm's "Unknown model"
        raise ConfigError(str(exc), key="backbone.name", value=name) from exc
    return TimmFeatures(model)


def build_backbone(spec: Any, *, key: str = "model.backbone") -> Any:
    """The backbone ``spec`` describes (see the module docstring)."""
    from automtl.graph import Graph

    if isinstance(spec, (nn.Module, Graph)):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        prefix, sep, rest = spec.partition(":")
        if sep and prefix in PREFIXES:
            arg = {"prototxt": "path"}.get(prefix, "name")
            return build(BACKBONES, {"type": prefix, arg: rest}, key=key)
        if spec.endswith(".prototxt"):
            return prototxt_backbone(spec)
        if spec in ZOO:
            return zoo_backbone(spec)
        raise ConfigError(f"unknown backbone; use {', '.join(p + ':NAME' for p in PREFIXES)}, "
                          f"a .prototxt path, a zoo name ({', '.join(ZOO)}) or "
                          "dict(type=<registered>)", key=key, value=spec)
    if isinstance(spec, Mapping):
        return build(BACKBONES, spec, key=key)
    raise ConfigError(f"a backbone is a string, a dict, an nn.Module or a Graph, not "
                      f"{type(spec).__name__}", key=key)
