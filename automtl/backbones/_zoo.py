"""Named torchvision backbones (feature extractors) as AutoMTL/AdaShare use them.

``zoo_backbone("deeplab_resnet34")`` is ResNet-34 with its last two stages dilated 2 and 4
(output stride 8); ``zoo_backbone("mobilenet_v2")`` is ``mobilenet_v2().features`` and so on:
every entry is a torchvision model cut by :func:`automtl.backbones.trunk`. Module names stay
readable (``layer1.0.conv1``, ``features.3.conv.0.0``) because they become node and layer
names. Weights are never downloaded (``weights=None``).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from automtl.backbones._trunk import trunk
from automtl.errors import UnsupportedLayerError

#: name -> (torchvision builder name, output stride or None for the model's own)
ZOO: dict[str, tuple[str, int | None]] = {
    "deeplab_resnet34": ("resnet34", 8),
    "resnet18": ("resnet18", None),
    "resnet34": ("resnet34", None),
    "resnet50": ("resnet50", None),
    "mobilenet_v2": ("mobilenet_v2", None),
    "mobilenet_v3_small": ("mobilenet_v3_small", None),
    "mnasnet1_0": ("mnasnet1_0", None),
    "efficientnet_b0": ("efficientnet_b0", None),
    "regnet_y_400mf": ("regnet_y_400mf", None),
}


def torchvision_model(name: str, *, full: bool = False, **kwargs: object) -> nn.Module:
    """A zoo backbone, or with ``full=True`` any whole torchvision model, randomly initialised."""
    import torchvision

    if not full and name in ZOO:
        return zoo_backbone(name)
    builder: Callable[..., nn.Module] | None = getattr(torchvision.models, name, None)
    if builder is None or not callable(builder) or name.startswith("_"):
        raise UnsupportedLayerError(f"torchvision has no model '{name}'; zoo backbones: "
                                    f"{', '.join(ZOO)}")
    return builder(weights=None, **kwargs)


def zoo_backbone(name: str) -> nn.Module:
    """The feature extractor called ``name`` (see :data:`ZOO`), randomly initialised."""
    if name not in ZOO:
        raise UnsupportedLayerError(f"unknown backbone '{name}'; known: {', '.join(ZOO)}")
    model_name, output_stride = ZOO[name]
    return trunk(torchvision_model(model_name, full=True), output_stride=output_stride)
