"""Flip test-time augmentation for instance segmentation (boxes *and* masks), as ViT-MVT tests
its Mask R-CNN; mmdet 3.3's ``DetTTAModel`` merges boxes only and refuses masks.

Every view's boxes and masks are mapped back to the original image (un-flipped), pooled, and
class-wise NMS keeps the best ``max_per_img``; a kept box keeps its own view's mask.
"""
from __future__ import annotations

from typing import Any

import torch
from mmcv.ops import batched_nms
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures.bbox import bbox_flip
from mmengine.structures import InstanceData
from torch import Tensor

from automtl.mm.scopes import register_mm


def unflip_masks(masks: Tensor, direction: str) -> Tensor:
    """Masks (N, H, W) predicted on a flipped view, mapped back onto the original image."""
    dims = {"horizontal": (-1,), "vertical": (-2,), "diagonal": (-2, -1)}[direction]
    return masks.flip(dims)


@register_mm()
class DetMaskTTAModel(DetTTAModel):
    """``DetTTAModel`` that also merges instance masks (flip and multi-scale views).

    ``tta_cfg``: ``dict(nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)``.
    """

    def _merge_single_sample(self, data_samples: list[Any]) -> Any:
        if data_samples[0].pred_instances.get("masks", None) is None:
            return super()._merge_single_sample(data_samples)
        boxes, scores, labels, masks = [], [], [], []
        for sample in data_samples:
            pred, meta = sample.pred_instances, sample.metainfo
            b, m = pred.bboxes, pred.masks
            if meta.get("flip", False):
                b = bbox_flip(bboxes=b, img_shape=meta["ori_shape"], direction=meta["flip_direction"])
                m = unflip_masks(m, meta["flip_direction"])
            boxes.append(b)
            scores.append(pred.scores)
            labels.append(pred.labels)
            masks.append(m)
        all_boxes = torch.cat(boxes)
        if all_boxes.numel() == 0:
            return data_samples[0]
        all_labels, all_masks = torch.cat(labels), torch.cat(masks)
        dets, keep = batched_nms(all_boxes, torch.cat(scores), all_labels, self.tta_cfg.nms)
        n = self.tta_cfg.max_per_img
        dets, keep = dets[:n], keep[:n]
        result = InstanceData()
        result.bboxes = dets[:, :-1].clone()
        result.scores = dets[:, -1].clone()
        result.labels = all_labels[keep]
        result.masks = all_masks[keep]
        merged = data_samples[0]
        merged.pred_instances = result
        return merged
