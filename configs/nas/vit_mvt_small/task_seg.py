# ViT-MVT-S (the released searched subnet, width 384) on ADE20K through mmseg: UPerNet on the maps after
# blocks 2, 5, 9, 13; schedule as configs/nas/vit_mvt_tiny/task_seg.py.
# Test protocol (ViT-MVT-S): multi-scale (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) + horizontal flip, mmseg's
# ADE20K test-time augmentation (tta_model / tta_pipeline inherited from mmseg's base configs): pass --tta.
#   python tools/train.py configs/nas/vit_mvt_small/task_seg.py --work-dir work_dirs/vit_mvt_s_seg
#   python tools/test.py configs/nas/vit_mvt_small/task_seg.py CKPT --work-dir DIR --eval mIoU --tta
_base_ = ["../vit_mvt_tiny/task_seg.py"]

subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-S subnet

model = dict(
    backbone=dict(subnet=subnet, size="small", out_indices=(2, 5, 9, 13)),
    neck=dict(in_channels=[384, 384, 384, 384], out_channels=384),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384),
)
