"""OpenMMLab pipelines: searched networks through mmpretrain, mmdet and mmsegmentation.

Needs the ``mm`` extra (``make install-mm``; see README, "OpenMMLab pipelines"). Configs reach
these parts with ``custom_imports = dict(imports=["automtl.mm.register"])``.

Units (one job each):

- ``scopes``      register a part in the three libraries' ``MODELS`` at once
- ``safe_load``   allow-list exactly what mmengine checkpoints pickle (weights-only loads)
- ``backbones``   ViT-MVT supernet / exported subnet / AutoMTL branched model as mm backbones
- ``necks``       simple feature pyramid from the stride-16 map (detection, as ViT-MVT)
- ``det_tta``     flip / multi-scale test-time augmentation of boxes and masks (Mask R-CNN)
- ``multitask``   one mmengine model: a shared searched backbone + cls, det and seg heads
- ``shared_backbone``   ViT-MVT with learned layer-adaptive sharing for several tasks
- ``compact_backbone``  the same with fixed sharing, every shared weight stored once (deployed form)
- ``branched_backbone`` an AutoMTL branched model serving several tasks (shared layers run once)
- ``mixed_data``  one dataset per task, batches with a fixed share of each task
- ``mt_metric``   routes each task's samples to its library's metric; one table + the T-Score
- ``merge``       merge per-task checkpoints by the layer-adaptive sharing scores
- ``tiny_sets``   tiny ImageNet-folder, COCO-json and ADE20K sets from the synthetic scenes
- ``runner``      ``tools/train.py`` / ``tools/test.py`` for OpenMMLab configs (``--eval`` mapping)
"""
from __future__ import annotations

from automtl._lazy import lazy_exports

_EXPORTS = {
    "MM_SCOPES": ".scopes", "register_mm": ".scopes", "require_mm": ".scopes",
    "build_in_scope": ".scopes", "allow_mmengine_checkpoints": ".safe_load",
    "MMMultiTaskModel": ".multitask", "merge_checkpoints": ".merge",
    "ViTMVTSubnetBackbone": ".backbones", "ViTMVTSupernetBackbone": ".backbones",
    "AutoMTLBranchedBackbone": ".backbones", "SimplePyramid": ".necks", "DetMaskTTAModel": ".det_tta",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
