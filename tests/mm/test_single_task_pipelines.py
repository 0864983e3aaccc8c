"""The shipped single-task OpenMMLab configs (ViT-MVT-T cls / det / seg, AutoMTL DeepLab-ResNet34 seg)
run end to end on the tiny sets: train one round, resume a second, reload for testing with ``--eval``.

Each test writes a derived config in ``tmp_path`` (``_base_`` = the shipped config) that shrinks the
input (64 px), the training set (4 images: one iteration per round), batch sizes, schedule and the width
of the heads (not of the searched backbones), the usual OpenMMLab way. One torch thread.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHAPES = ("sphere", "box", "cylinder")

CLS = """
data_preprocessor = dict(num_classes=3)
model = dict(head=dict(num_classes=3))
train_pipeline = [dict(type="LoadImageFromFile"), dict(type="RandomResizedCrop", scale=64),
                  dict(type="RandomFlip", prob=0.5, direction="horizontal"), dict(type="PackInputs")]
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="ResizeEdge", scale=64, edge="short"),
                 dict(type="CenterCrop", crop_size=64), dict(type="PackInputs")]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline, metainfo=dict(classes=SHAPES), indices=4))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=test_pipeline, metainfo=dict(classes=SHAPES)))
test_dataloader = val_dataloader
val_evaluator = dict(type="Accuracy", topk=(1,))
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=100)  # no validation while training
param_scheduler = [dict(type="LinearLR", start_factor=0.5, by_epoch=True, begin=0, end=2, convert_to_iter_based=True)]
default_hooks = dict(logger=dict(interval=1))
"""

DET = """
model = dict(roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)),
             train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=200, max_per_img=100),
                            rcnn=dict(sampler=dict(num=32))),
             test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(max_per_img=10)))
model["roi_head"]["bbox_head"]["fc_out_channels"] = 256  # narrower heads: faster steps and checkpoints
train_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                  dict(type="Resize", scale=(64, 64), keep_ratio=True), dict(type="RandomFlip", prob=0.5),
                  dict(type="PackDetInputs")]
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(64, 64), keep_ratio=True),
                 dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                 dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline, metainfo=dict(classes=SHAPES), indices=4))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=test_pipeline, metainfo=dict(classes=SHAPES)))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=100)  # no validation while training
default_hooks = dict(logger=dict(interval=1))
"""

SEG = """
crop_size = (64, 64)
model = dict(data_preprocessor=dict(size=crop_size))
train_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True),
                  dict(type="RandomResize", scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
                  dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
                  dict(type="RandomFlip", prob=0.5), dict(type="PackSegInputs")]
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(128, 64), keep_ratio=True),
                 dict(type="LoadAnnotations", reduce_zero_label=True), dict(type="PackSegInputs")]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline, indices=4))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=1, val_interval=100)  # no validation while training
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
"""


def derived(tmp_path: Path, shipped: str, body: str) -> str:
    """A config in ``tmp_path`` inheriting ``shipped`` with ``body``'s small-input overrides."""
    path = tmp_path / f"small_{Path(shipped).stem}.py"
    path.write_text(f"_base_ = [{str(REPO / shipped)!r}]\nSHAPES = {SHAPES!r}\n{body}")
    return str(path)


def run_pipeline(tmp_path: Path, config: str, root: Path, more: str, evals: list[str],
                 keys: list[str]) -> dict[str, float]:
    """Train one round, resume to a second, then test the last checkpoint with ``--eval``."""
    from automtl.mm.runner import test_mm, train_mm

    work = tmp_path / "work"
    data = [f"data_root={root}/"]
    first = train_mm(config, work_dir=str(work), cfg_options=data, seed=0)
    assert first["checkpoint"] and Path(first["checkpoint"]).is_file()
    second = train_mm(config, work_dir=str(work), resume=True, cfg_options=data + [more], seed=0)
    assert second["checkpoint"] != first["checkpoint"], "resume did not continue to a new checkpoint"
    log = "\n".join(p.read_text() for p in work.rglob("*.log"))
    assert "resumed" in log.lower(), "the second run did not resume"
    metrics = test_mm(config, second["checkpoint"], work_dir=str(tmp_path / "test"), evals=evals,
                      cfg_options=data)
    for key in keys:
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), (key, metrics[key])
    return metrics


@pytest.mark.slow
def test_vit_mvt_tiny_classification(tmp_path: Path, tiny_sets: dict[str, Path]) -> None:
    config = derived(tmp_path, "configs/nas/vit_mvt_tiny/task_cls.py", CLS)
    run_pipeline(tmp_path, config, tiny_sets["imagenet"], "train_cfg.max_epochs=2", ["accuracy"],
                 ["accuracy/top1"])


@pytest.mark.slow
def test_vit_mvt_tiny_detection(tmp_path: Path, tiny_sets: dict[str, Path]) -> None:
    config = derived(tmp_path, "configs/nas/vit_mvt_tiny/task_det.py", DET)
    run_pipeline(tmp_path, config, tiny_sets["coco"], "train_cfg.max_epochs=2", ["bbox", "segm"],
                 ["coco/bbox_mAP", "coco/segm_mAP"])


@pytest.mark.slow
def test_vit_mvt_tiny_segmentation(tmp_path: Path, tiny_sets: dict[str, Path]) -> None:
    narrow = 'model["decode_head"] = dict(channels=64)\nmodel["auxiliary_head"] = dict(channels=32)\n'
    config = derived(tmp_path, "configs/nas/vit_mvt_tiny/task_seg.py", SEG + narrow)
    run_pipeline(tmp_path, config, tiny_sets["ade20k"], "train_cfg.max_iters=2", ["mIoU"], ["mIoU"])


@pytest.mark.slow
def test_automtl_deeplab_resnet34_segmentation(tmp_path: Path, tiny_sets: dict[str, Path]) -> None:
    config = derived(tmp_path, "configs/automtl/deeplab_resnet34_ade20k_mmseg.py",
                     SEG + 'model["decode_head"] = dict(channels=64)\n')
    run_pipeline(tmp_path, config, tiny_sets["ade20k"], "train_cfg.max_iters=2", ["mIoU"], ["mIoU"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
