# ViT-MVT-T (the released searched subnet) on ImageNet-1k through mmpretrain: an ImageClassifier whose
# head is ViT-MVT's (final LayerNorm, token mean, linear). Training recipe: mmpretrain's DeiT / Swin
# ImageNet recipe (224 px, RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, AdamW lr 1e-3 at
# batch 1024, weight decay 0.05, 300 epochs, 20 warm-up epochs), as for AutoFormer-style subnets.
# Test protocol: resize the short edge to 256, centre crop 224, single view.
# Data: ImageNet folder layout under data_root (train/<class>/*.JPEG, val/*.JPEG, meta/{train,val}.txt).
#   python tools/train.py configs/nas/vit_mvt_tiny/task_cls.py --work-dir work_dirs/vit_mvt_t_cls
#   python tools/test.py configs/nas/vit_mvt_tiny/task_cls.py CKPT --work-dir DIR --eval accuracy
_base_ = [
    "mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py",
    "mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py",
    "mmpretrain::_base_/default_runtime.py",
]
custom_imports = dict(imports=["automtl.mm.register"], allow_failed_imports=False)
default_scope = "mmpretrain"

data_root = "data/imagenet/"
subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-T subnet (depth 14, width 216)

model = dict(
    type="ImageClassifier",
    backbone=dict(type="ViTMVTSubnetBackbone", subnet=subnet, size="tiny", out_indices=(-1,), final_norm=True,
                  drop_path_rate=0.1),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(type="LinearClsHead", num_classes=1000, in_channels=216,
              loss=dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="original")),
    init_cfg=[dict(type="TruncNormal", layer="Linear", std=0.02),
              dict(type="Constant", layer="LayerNorm", val=1.0, bias=0.0)],
    train_cfg=dict(augments=[dict(type="Mixup", alpha=0.8), dict(type="CutMix", alpha=1.0)]),
)

train_dataloader = dict(
    batch_size=128,  # x 8 GPUs = 1024
    dataset=dict(data_root=data_root, split="", data_prefix="train", ann_file="meta/train.txt"))
val_dataloader = dict(
    batch_size=128,
    dataset=dict(data_root=data_root, split="", data_prefix="val", ann_file="meta/val.txt"))
test_dataloader = val_dataloader

optim_wrapper = dict(
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={".pos.weight": dict(decay_mult=0.0), ".rel.table": dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0),
)
