"""Flip test-time augmentation of Mask R-CNN predictions: boxes and masks mapped back and merged."""
from __future__ import annotations

import torch
from torch import nn


def _view(boxes: list[list[float]], scores: list[float], labels: list[int], flip: bool) -> object:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    h, w = 20, 30
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[int(y1):int(y2), int(x1):int(x2)] = True
    sample = DetDataSample(metainfo=dict(ori_shape=(h, w), img_shape=(h, w), flip=flip,
                                         flip_direction="horizontal" if flip else None))
    sample.pred_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(scores),
                                         labels=torch.tensor(labels), masks=masks)
    return sample


class _Model(nn.Module):
    """Stands in for the detector: merging never calls it."""

    def test_step(self, data: object) -> list:
        return []


def test_flipped_views_merge_boxes_and_masks() -> None:
    from mmengine.config import ConfigDict

    from automtl.mm.det_tta import DetMaskTTAModel

    tta = DetMaskTTAModel(module=_Model(),
                          tta_cfg=ConfigDict(nms=dict(type="nms", iou_threshold=0.5), max_per_img=100))
    plain = _view([[2, 3, 10, 12]], [0.9], [0], flip=False)
    # the same object seen in the flipped image (x -> 30 - x), and one object only this view found
    flipped = _view([[20, 3, 28, 12], [0, 0, 5, 5]], [0.8, 0.7], [0, 1], flip=True)
    merged = tta.merge_preds([[plain, flipped]])[0].pred_instances
    assert merged.labels.tolist() == [0, 1]
    torch.testing.assert_close(merged.scores, torch.tensor([0.9, 0.7]))
    torch.testing.assert_close(merged.bboxes, torch.tensor([[2.0, 3, 10, 12], [25, 0, 30, 5]]))
    expected = torch.zeros(2, 20, 30, dtype=torch.bool)
    expected[0, 3:12, 2:10] = True
    expected[1, 0:5, 25:30] = True
    assert torch.equal(merged.masks, expected)
