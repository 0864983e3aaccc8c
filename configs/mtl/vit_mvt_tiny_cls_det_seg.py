# One multi-task model across mmpretrain, mmdet and mmseg (see README, "One multi-task model
# across mmpretrain, mmdet and mmseg"): the ViT-MVT-T subnet (configs/nas/vit_mvt_tiny/subnet.yaml)
# shared by ImageNet classification, COCO Mask R-CNN detection and ADE20K UPerNet segmentation
# with layer-adaptive sharing (per linear and task a learned score; > 0.5 → the shared weight).
# Every batch holds 2 ImageNet + 2 COCO + 2 ADE20K images per GPU (multi-source sampling).
#
#   python tools/train.py configs/mtl/vit_mvt_tiny_cls_det_seg.py --work-dir work_dirs/mtl_t
#   python tools/test.py configs/mtl/vit_mvt_tiny_cls_det_seg.py work_dirs/mtl_t/iter_160000.pth \
#       --work-dir work_dirs/mtl_t --eval accuracy bbox mIoU      # one table + the T-Score
#
# Data roots (each a top-level variable; --cfg-options cls_data_root=DIR retargets every path):
#   cls_data_root: train/<class>/*.JPEG, val/*.JPEG, meta/{train,val}.txt ("<path> <label>")
#   det_data_root: annotations/instances_{train,val}2017.json, {train,val}2017/*.jpg
#   seg_data_root: images/{training,validation}/*.jpg, annotations/{training,validation}/*.png
# Tiny sets of all three (tools/make_tiny_datasets.py) run the whole pipeline on a CPU.
default_scope = "mmdet"
custom_imports = dict(imports=["automtl.mm.register"], allow_failed_imports=False)

cls_data_root = "data/imagenet/"
det_data_root = "data/coco/"
seg_data_root = "data/ade/ADEChallengeData2016/"
subnet = "configs/nas/vit_mvt_tiny/subnet.yaml"
embed_dims = 216  # embed_channels.0 of the T subnet
num_classes = dict(cls=1000, det=80, seg=150)
norm_cfg = dict(type="SyncBN", requires_grad=True)  # plain BN when not distributed (mmengine reverts it)
img_norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])

model = dict(
    type="MMMultiTaskModel",
    backbone=dict(
        type="ViTMVTSharingBackbone",
        subnet=subnet,
        space="tiny",
        tasks=("cls", "det", "seg"),
        # as the single-task T configs (configs/nas/vit_mvt_tiny/task_*.py), so their checkpoints merge:
        # UPerNet reads blocks 2, 5, 9, 13; Mask R-CNN the last map without the final norm, after
        # ViT-MVT's detection conv aggregation blocks (det's own) following blocks 2, 5, 9, 13
        out_indices=dict(cls=(-1,), det=(-1,), seg=(2, 5, 9, 13)),
        final_norm=dict(cls=True, det=False, seg=True),
        aggregation=dict(det=(2, 5, 9, 13)),
        drop_path_rate=0.1,
        score_init=1.0,
    ),
    tasks=dict(
        cls=dict(
            type="ImageClassifier",
            data_preprocessor=dict(type="ClsDataPreprocessor", **img_norm, to_rgb=True),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=num_classes["cls"], in_channels=embed_dims,
                      loss=dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="original"),
                      topk=(1, 5)),
        ),
        det=dict(
            type="MaskRCNN",
            data_preprocessor=dict(type="DetDataPreprocessor", **img_norm, bgr_to_rgb=True, pad_mask=True,
                                   pad_size_divisor=32),
            neck=dict(type="SimplePyramid", in_channels=embed_dims, out_channels=256,
                      scales=(4.0, 2.0, 1.0, 0.5), extra_pool=True),
            rpn_head=dict(
                type="RPNHead", in_channels=256, feat_channels=256,
                anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                      strides=[4, 8, 16, 32, 64]),
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
            roi_head=dict(
                type="StandardRoIHead",
                bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                        roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
                                        out_channels=256, featmap_strides=[4, 8, 16, 32]),
                bbox_head=dict(
                    type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                    num_classes=num_classes["det"],
                    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                                    target_stds=[0.1, 0.1, 0.2, 0.2]),
                    reg_class_agnostic=False,
                    loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
                    loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
                mask_roi_extractor=dict(type="SingleRoIExtractor",
                                        roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
                                        out_channels=256, featmap_strides=[4, 8, 16, 32]),
                mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256,
                               num_classes=num_classes["det"],
                               loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0))),
            train_cfg=dict(
                rpn=dict(
                    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                                  match_low_quality=True, ignore_iof_thr=-1),
                    sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1,
                                 add_gt_as_proposals=False),
                    allowed_border=-1, pos_weight=-1, debug=False),
                rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7),
                                  min_bbox_size=0),
                rcnn=dict(
                    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                                  match_low_quality=True, ignore_iof_thr=-1),
                    sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1,
                                 add_gt_as_proposals=True),
                    mask_size=28, pos_weight=-1, debug=False)),
            test_cfg=dict(
                rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
                rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100,
                          mask_thr_binary=0.5)),
        ),
        seg=dict(
            type="EncoderDecoder",
            data_preprocessor=dict(type="SegDataPreProcessor", **img_norm, bgr_to_rgb=True, pad_val=0,
                                   seg_pad_val=255, size=(512, 512), test_cfg=dict(size_divisor=32)),
            neck=dict(type="MultiLevelNeck", in_channels=[embed_dims] * 4, out_channels=embed_dims,
                      scales=[4, 2, 1, 0.5]),
            decode_head=dict(
                type="UPerHead", in_channels=[embed_dims] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                channels=512, dropout_ratio=0.1, num_classes=num_classes["seg"], norm_cfg=norm_cfg,
                align_corners=False, loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
            auxiliary_head=dict(
                type="FCNHead", in_channels=embed_dims, in_index=3, channels=256, num_convs=1, concat_input=False,
                dropout_ratio=0.1, num_classes=num_classes["seg"], norm_cfg=norm_cfg, align_corners=False,
                loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)),
            train_cfg=dict(),
            test_cfg=dict(mode="whole"),
        ),
    ),
)

# ------------------------------------------------------------------------------ data
cls_train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="RandomResizedCrop", scale=224, backend="pillow", interpolation="bicubic"),
    dict(type="RandomFlip", prob=0.5, direction="horizontal"),
    dict(type="PackInputs"),
]
cls_test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="ResizeEdge", scale=256, edge="short", backend="pillow", interpolation="bicubic"),
    dict(type="CenterCrop", crop_size=224),
    dict(type="PackInputs"),
]
det_train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
det_test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
seg_train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=(512, 512), cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
seg_test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="PackSegInputs"),
]

train_dataloader = dict(
    batch_size=6,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_sampler=dict(type="MultiTaskBatchSampler", shares=dict(cls=2, det=2, seg=2)),
    dataset=dict(
        type="MultiTaskDataset",
        datasets=dict(
            cls=dict(type="ImageNet", data_root=cls_data_root, ann_file="meta/train.txt", data_prefix="train",
                     pipeline=cls_train_pipeline),
            det=dict(type="CocoDataset", data_root=det_data_root, ann_file="annotations/instances_train2017.json",
                     data_prefix=dict(img="train2017/"), filter_cfg=dict(filter_empty_gt=True, min_size=32),
                     pipeline=det_train_pipeline),
            seg=dict(type="ADE20KDataset", data_root=seg_data_root,
                     data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
                     pipeline=seg_train_pipeline),
        ),
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="MultiTaskDataset",
        datasets=dict(
            cls=dict(type="ImageNet", data_root=cls_data_root, ann_file="meta/val.txt", data_prefix="val",
                     pipeline=cls_test_pipeline),
            det=dict(type="CocoDataset", data_root=det_data_root, ann_file="annotations/instances_val2017.json",
                     data_prefix=dict(img="val2017/"), test_mode=True, pipeline=det_test_pipeline),
            seg=dict(type="ADE20KDataset", data_root=seg_data_root,
                     data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
                     pipeline=seg_test_pipeline),
        ),
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    type="MultiTaskMetric",
    metrics=dict(
        cls=dict(type="Accuracy", topk=(1, 5)),
        det=dict(type="CocoMetric", ann_file=det_data_root + "annotations/instances_val2017.json",
                 metric=["bbox", "segm"], format_only=False),
        seg=dict(type="IoUMetric", iou_metrics=["mIoU"]),
    ),
)
test_evaluator = val_evaluator

# ------------------------------------------------------------------------------ schedule
max_iters = 160000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=16000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # no decay on norms, position tables and the sharing scores
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={".pos": dict(decay_mult=0.0), ".rel_table": dict(decay_mult=0.0),
                                    ".score.": dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=1.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False),
]

# ------------------------------------------------------------------------------ runtime
# every task uses its own weights only: unused weights of the other tasks get no gradient
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=True)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=16000, max_keep_ckpts=3,
                    save_best="T-Score", rule="greater"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
