# ViT-MVT-T (the released searched subnet) on ADE20K through mmseg: UPerNet (mmseg's base model for plain
# ViTs: multi-level neck at scales 4, 2, 1, 0.5 of the stride-16 maps after blocks 2, 5, 9, 13; UPerHead,
# auxiliary FCN head), 512x512 crops, 160k iterations; AdamW (lr 6e-5, weight decay 0.01, poly decay,
# 1.5k warm-up iterations) as mmseg trains ViT backbones.
# Test protocol (ViT-MVT-T): single scale (short side 512), no flip. The multi-scale + flip pipeline
# inherited from mmseg's ADE20K config stays available with --tta (the S config's protocol).
# Data: ADE20K layout under data_root (images/ and annotations/ with training/ and validation/).
#   python tools/train.py configs/nas/vit_mvt_tiny/task_seg.py --work-dir work_dirs/vit_mvt_t_seg
#   python tools/test.py configs/nas/vit_mvt_tiny/task_seg.py CKPT --work-dir DIR --eval mIoU
_base_ = [
    "mmseg::_base_/models/upernet_vit-b16_ln_mln.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_160k.py",
]
custom_imports = dict(imports=["automtl.mm.register"], allow_failed_imports=False)
default_scope = "mmseg"

data_root = "data/ade/ADEChallengeData2016/"
subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-T subnet (depth 14, width 216)
crop_size = (512, 512)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type="ViTMVTSubnetBackbone", subnet=subnet, size="tiny", out_indices=(2, 5, 9, 13),
                  final_norm=True, drop_path_rate=0.1),
    neck=dict(in_channels=[216, 216, 216, 216], out_channels=216, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[216, 216, 216, 216], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=216, num_classes=150),
    test_cfg=dict(mode="whole"),
)

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))  # x 8 GPUs = 16
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={".pos.weight": dict(decay_mult=0.0), ".rel.table": dict(decay_mult=0.0),
                                    "norm": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
