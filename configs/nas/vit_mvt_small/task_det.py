# ViT-MVT-S (the released searched subnet, width 384) on COCO through mmdet: Mask R-CNN on a simple feature
# pyramid from the stride-16 map, with ViT-MVT's conv aggregation blocks after layers 2, 5, 9 and 13; schedule and
# flip test-time augmentation (--tta) as configs/nas/vit_mvt_tiny/task_det.py.
#   python tools/train.py configs/nas/vit_mvt_small/task_det.py --work-dir work_dirs/vit_mvt_s_det
#   python tools/test.py configs/nas/vit_mvt_small/task_det.py CKPT --work-dir DIR --eval bbox segm --tta
_base_ = ["../vit_mvt_tiny/task_det.py"]

subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-S subnet

model = dict(backbone=dict(subnet=subnet, size="small"), neck=dict(in_channels=384))
