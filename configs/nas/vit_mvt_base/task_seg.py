# ViT-MVT-B (the released searched subnet, depth 16, width 576) on ADE20K through mmseg: UPerNet on the maps
# after blocks 3, 7, 11, 15; schedule as configs/nas/vit_mvt_tiny/task_seg.py.
# Test protocol (ViT-MVT-B): single scale (short side 512), no flip.
#   python tools/train.py configs/nas/vit_mvt_base/task_seg.py --work-dir work_dirs/vit_mvt_b_seg
#   python tools/test.py configs/nas/vit_mvt_base/task_seg.py CKPT --work-dir DIR --eval mIoU
_base_ = ["../vit_mvt_tiny/task_seg.py"]

subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-B subnet

model = dict(
    backbone=dict(subnet=subnet, size="base", out_indices=(3, 7, 11, 15)),
    neck=dict(in_channels=[576, 576, 576, 576], out_channels=576),
    decode_head=dict(in_channels=[576, 576, 576, 576]),
    auxiliary_head=dict(in_channels=576),
)
