"""Named torchvision backbones (feature extractors) as AutoMTL/AdaShare use them.

``backbone("deeplab_resnet34")`` is ResNet-34 with its last two stages dilated 2 and 4
(output stride 8); ``backbone("mobilenet_v2")`` is ``mobilenet_v2().features`` and so on.
Module names are kept readable (``layer1.0.conv1``, ``features.3.conv.0.0``) because they
become node and layer names. Weights are never downloaded (``weights=None``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torchvision
from torch import nn

from automtl.errors import UnsupportedLayerError


def _resnet_trunk(model: nn.Module) -> nn.Module:
    """ResNet without its pooling and classifier (stem + layer1..layer4)."""
    return nn.Sequential(OrderedDict(list(model.named_children())[:-2]))


def dilate_resnet(model: nn.Module, dilations: tuple[int, int, int, int] = (1, 1, 2, 4)) -> nn.Module:
    """Replace the stride of ``layer1..4`` by dilation, torchvision style (``replace_stride_with_dilation``).

    The first block of a dilated stage keeps the previous stage's dilation; its stride (and
    the downsample's) becomes 1. Works for BasicBlock too, which torchvision refuses to dilate.
    """
    previous = 1
    for i, dilation in enumerate(dilations, start=1):
        layer = getattr(model, f"layer{i}")
        if dilation == 1:
            previous = 1
            continue
        for j, block in enumerate(layer):
            d = previous if j == 0 else dilation
            for conv in block.modules():
                if isinstance(conv, nn.Conv2d) and conv.kernel_size != (1, 1):
                    conv.stride = (1, 1)
                    conv.dilation = (d, d)
                    conv.padding = (d * (conv.kernel_size[0] - 1) // 2, d * (conv.kernel_size[1] - 1) // 2)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        previous = dilation
    return model


def _wrap(name: str, module: nn.Module) -> nn.Module:
    return nn.Sequential(OrderedDict([(name, module)]))


def _regnet_trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(OrderedDict([("stem", model.stem), ("trunk_output", model.trunk_output)]))


BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "deeplab_resnet34": lambda: _resnet_trunk(dilate_resnet(torchvision.models.resnet34(weights=None))),
    "resnet18": lambda: _resnet_trunk(torchvision.models.resnet18(weights=None)),
    "resnet34": lambda: _resnet_trunk(torchvision.models.resnet34(weights=None)),
    "resnet50": lambda: _resnet_trunk(torchvision.models.resnet50(weights=None)),
    "mobilenet_v2": lambda: _wrap("features", torchvision.models.mobilenet_v2(weights=None).features),
    "mobilenet_v3_small": lambda: _wrap("features", torchvision.models.mobilenet_v3_small(weights=None).features),
    "mnasnet1_0": lambda: _wrap("layers", torchvision.models.mnasnet1_0(weights=None).layers),
    "efficientnet_b0": lambda: _wrap("features", torchvision.models.efficientnet_b0(weights=None).features),
    "regnet_y_400mf": lambda: _regnet_trunk(torchvision.models.regnet_y_400mf(weights=None)),
}


def backbone(name: str) -> nn.Module:
    """The feature extractor called ``name`` (see :data:`BACKBONES`), randomly initialised."""
    try:
        return BACKBONES[name]()
    except KeyError:
        raise UnsupportedLayerError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}") from None


def torchvision_model(name: str, *, full: bool = False) -> nn.Module:
    """A named backbone, or with ``full=True`` any whole torchvision classification model."""
    if not full:
        return backbone(name)
    builder = getattr(torchvision.models, name, None)
    if builder is None or not callable(builder) or name.startswith("_"):
        raise UnsupportedLayerError(f"torchvision has no model '{name}'")
    return builder(weights=None)
