"""Cutting a classification network into a feature extractor by output stride.

A torchvision (or any sequential-style) network is a list of children: a convolutional
trunk, then pooling and a classifier. :func:`trunk` keeps children while they map a feature
map to a feature map (4-D in, 4-D out, not a global/adaptive pool), so ResNets lose
``avgpool``/``fc`` and MobileNets keep ``features`` without dropping a fixed number of
children. With ``output_stride`` it stops where the map would become coarser, descending into
``nn.Sequential`` children to cut inside them, and dilates ResNets instead of cutting them.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from automtl.errors import ConfigError

PROBE_SIZE = 64  # input side of the shape probe: stride 32 still leaves a 2x2 map
_HEAD_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


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


_RESNET_DILATIONS = {32: (1, 1, 1, 1), 16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}


def _is_resnet(model: nn.Module) -> bool:
    return all(hasattr(model, f"layer{i}") for i in range(1, 5)) and hasattr(model, "conv1")


def _step(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``module(x)`` when it maps a feature map to a feature map, else None (a head)."""
    if isinstance(module, _HEAD_TYPES):
        return None
    try:
        y = module(x)
    except (RuntimeError, ValueError, TypeError):
        return None
    return y if isinstance(y, torch.Tensor) and y.dim() == 4 else None


def _keep(children: list[tuple[str, nn.Module]], x: torch.Tensor, size: int,
          output_stride: int | None) -> tuple[list[tuple[str, nn.Module]], torch.Tensor, bool]:
    """The longest prefix of ``children`` that stays a feature map within ``output_stride``;
    also the probe output and whether the cut happened (True: stop the walk)."""
    kept: list[tuple[str, nn.Module]] = []
    for name, child in children:
        y = _step(child, x)
        if y is None:
            return kept, x, True
        if output_stride is not None and size / y.shape[-1] > output_stride:
            if isinstance(child, nn.Sequential) and len(child) > 0:
                inner, x, _ = _keep(list(child.named_children()), x, size, output_stride)
                if inner:
                    kept.append((name, nn.Sequential(OrderedDict(inner))))
            return kept, x, True
        kept.append((name, child))
        x = y
    return kept, x, False


def trunk(model: nn.Module, *, output_stride: int | None = None,
          in_channels: int = 3) -> nn.Sequential:
    """The feature-extracting prefix of ``model`` (see the module docstring).

    ``output_stride``: 8, 16 or 32 for ResNets (dilating the last stages, as DeepLab does);
    for other networks the coarsest stride to keep (children beyond it are cut).
    """
    if output_stride is not None and _is_resnet(model):
        if output_stride not in _RESNET_DILATIONS:
            raise ConfigError(f"a ResNet trunk has output stride 8, 16 or 32, not {output_stride}",
                              key="output_stride")
        dilate_resnet(model, _RESNET_DILATIONS[output_stride])
        output_stride = None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, PROBE_SIZE, PROBE_SIZE)
            kept, y, _ = _keep(list(model.named_children()), x, PROBE_SIZE, output_stride)
    finally:
        model.train(was_training)
    if not kept:
        raise ConfigError(f"{type(model).__name__} has no child that maps an image to a "
                          "feature map; pass the feature extractor itself", key="backbone")
    out = nn.Sequential(OrderedDict(kept))
    # torch types Module attributes as Tensor | Module, but any value may be set on a module
    out.out_channels = int(y.shape[1])  # type: ignore[assignment]
    out.output_stride = PROBE_SIZE // int(y.shape[-1])  # type: ignore[assignment]
    return out
