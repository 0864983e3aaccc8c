# ViT-MVT-S (the released searched subnet, width 384) on ImageNet-1k through mmpretrain: the recipe and test
# protocol of configs/nas/vit_mvt_tiny/task_cls.py (224 px, DeiT/Swin ImageNet recipe; resize 256, centre
# crop 224, single view), with the S subnet.
#   python tools/train.py configs/nas/vit_mvt_small/task_cls.py --work-dir work_dirs/vit_mvt_s_cls
#   python tools/test.py configs/nas/vit_mvt_small/task_cls.py CKPT --work-dir DIR --eval accuracy
_base_ = ["../vit_mvt_tiny/task_cls.py"]

subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-S subnet

model = dict(backbone=dict(subnet=subnet, size="small"), head=dict(in_channels=384))
