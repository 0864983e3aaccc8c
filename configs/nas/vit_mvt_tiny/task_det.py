# ViT-MVT-T (the released searched subnet) on COCO through mmdet: Mask R-CNN (RPN + RoIAlign box and mask
# heads, mmdet's own base model) on a simple feature pyramid built from the stride-16 map (strides 4-64),
# with ViT-MVT's conv aggregation blocks (two 3x3 convs + BN) after layers 2, 5, 9 and 13.
# Training: mmdet's 1x schedule (12 epochs, steps at 8 and 11, 1333x800, flip) with AdamW (lr 1e-4,
# weight decay 0.05, gradient clip 1.0), as plain-ViT detectors are trained.
# Test protocol (ViT-MVT): horizontal-flip test-time augmentation of boxes and masks: pass --tta.
# CPU note: only ops with a CPU kernel in mmcv 2.1 are used (RoIAlign, nms; no RoIPool / focal loss / CARAFE).
#   python tools/train.py configs/nas/vit_mvt_tiny/task_det.py --work-dir work_dirs/vit_mvt_t_det
#   python tools/test.py configs/nas/vit_mvt_tiny/task_det.py CKPT --work-dir DIR --eval bbox segm --tta
_base_ = [
    "mmdet::_base_/models/mask-rcnn_r50_fpn.py",
    "mmdet::_base_/datasets/coco_instance.py",
    "mmdet::_base_/schedules/schedule_1x.py",
    "mmdet::_base_/default_runtime.py",
]
custom_imports = dict(imports=["automtl.mm.register"], allow_failed_imports=False)
default_scope = "mmdet"

data_root = "data/coco/"
subnet = "{{fileDirname}}/subnet.yaml"  # the released ViT-MVT-T subnet (depth 14, width 216)

model = dict(
    backbone=dict(_delete_=True, type="ViTMVTSubnetBackbone", subnet=subnet, size="tiny", out_indices=(-1,),
                  conv_aggregation=True, drop_path_rate=0.1),
    neck=dict(_delete_=True, type="SimplePyramid", in_channels=216, out_channels=256,
              scales=(4.0, 2.0, 1.0, 0.5), extra_pool=True),
)

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val2017.json")
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True, type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={".pos.weight": dict(decay_mult=0.0), ".rel.table": dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=1.0, norm_type=2),
)

# flip test-time augmentation (boxes and masks merged by class-wise NMS)
tta_model = dict(type="DetMaskTTAModel", tta_cfg=dict(nms=dict(type="nms", iou_threshold=0.5), max_per_img=100))
tta_pipeline = [
    dict(type="LoadImageFromFile", backend_args=None),
    dict(type="TestTimeAug", transforms=[
        [dict(type="Resize", scale=(1333, 800), keep_ratio=True)],
        [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)],
        [dict(type="LoadAnnotations", with_bbox=True, with_mask=True)],
        [dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor",
                                               "flip", "flip_direction"))],
    ]),
]
