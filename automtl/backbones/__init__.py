"""Backbones: one builder (:func:`build_backbone`) for every way a config or a user names one.

Registered in :data:`automtl.registry.BACKBONES`: ``TinyResNet`` (CPU demo size),
``torchvision`` (zoo names such as ``deeplab_resnet34`` or any torchvision model cut by output
stride), ``prototxt`` and ``timm``. Example::

    from automtl.backbones import build_backbone
    net = build_backbone("torchvision:mobilenet_v2")           # mobilenet_v2().features
    net = build_backbone(dict(type="torchvision", name="resnet50", output_stride=16))
"""
from __future__ import annotations

from automtl.backbones._build import (
                                      PREFIXES,
                                      TimmFeatures,
                                      build_backbone,
                                      prototxt_backbone,
                                      timm_backbone,
                                      torchvision_backbone,
)
from automtl.backbones._tiny import BasicBlock, TinyResNet
from automtl.backbones._trunk import dilate_resnet, trunk
from automtl.backbones._zoo import ZOO, torchvision_model, zoo_backbone

__all__ = ["BasicBlock", "PREFIXES", "TimmFeatures", "TinyResNet", "ZOO", "build_backbone",
           "dilate_resnet", "prototxt_backbone", "timm_backbone", "torchvision_backbone",
           "torchvision_model", "trunk", "zoo_backbone"]
