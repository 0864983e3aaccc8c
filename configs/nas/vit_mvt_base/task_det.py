# ViT-MVT-B (the released searched subnet, width 576) on COCO through mmdet: Mask R-CNN on a simple feature
# pyramid from the stride-16 map, with ViT-MVT's conv aggregation blocks after layers 3, 7, 11 and 15; schedule and
# flip test-time augmentation (--tta) as configs/nas/vit_mvt_tiny/task_det.py.
#   python tools/train.py configs/nas/vit_mvt_base/task_det.py --work-dir work_dirs/vit_mvt_b_det
#   python tools/test.py configs/nas/vit_mvt_base/task_det.py CKPT --work-dir DIR --eval bbox segm --tta
_base_ = ["../vit_mvt_tiny/task_det.py"]

subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-B subnet

model = dict(backbone=dict(subnet=subnet, size="base"), neck=dict(in_channels=576))
