# An AutoMTL policy on DeepLab-ResNet34 (dilated, output stride 8) through mmseg: the semantic-segmentation
# branch of the compiled branched model (AutoMTLBranchedBackbone: only the layers that task runs under the
# policy) with mmseg's ASPP head (channels 512, dilations 1/12/24/36 as mmseg's stride-8 DeepLabV3), on
# ADE20K (150 classes, 512x512 crops) with mmseg's DeepLabV3 ADE20K schedule (SGD lr 0.01, poly, 80k iters,
# batch 16). Evaluated single scale with --eval mIoU.
#
# The policy (deeplab_resnet34_ade20k_mmseg_policy.json, next to this file) comes from a short AutoMTL
# policy-train on the built-in synthetic scenes (3 tasks: segment_semantic, depth_zbuffer, normal; 64x64
# images), NOT from a run on a real data set:
#   python tools/train.py configs/automtl/synthetic_deeplab_resnet34.py --work-dir work_dirs/ade_policy
#     --device cpu --seed 0 --cfg-options "tasks=['segment_semantic','depth_zbuffer','normal']"
#     data.size=64 data.n_train=64 data.n_val=8 data.batch_size=4 "model.input_shape=(1,3,64,64)"
#     pre_train.iters=20 alter_train_with_reg.iters=40 "alter_train_with_reg.policy_network_iters=(5,5)"
#     sample.n=10 post_train.iters=4 trainer.checkpoint_iters=20 trainer.print_iters=10 trainer.val_iters=0
# (its policy.json, sampled within AutoMTL's 60 % parameter budget, is copied here; ~9 minutes on a busy
# 2-core CPU). Replace it with the policy of your own run (any policy JSON over
# the same prototxt whose tasks include `task` below); the post-trained weights of that run load with
# model.backbone.init_cfg=dict(type="Pretrained", checkpoint="work_dirs/.../post_train.pt").
#   python tools/train.py configs/automtl/deeplab_resnet34_ade20k_mmseg.py --work-dir work_dirs/automtl_ade
#   python tools/test.py configs/automtl/deeplab_resnet34_ade20k_mmseg.py CKPT --work-dir DIR --eval mIoU
_base_ = [
    "mmseg::_base_/models/deeplabv3_r50-d8.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_80k.py",
]
custom_imports = dict(imports=["automtl.mm.register"], allow_failed_imports=False)
default_scope = "mmseg"

data_root = "data/ade/ADEChallengeData2016/"
crop_size = (512, 512)
policy = "{{fileDirname}}/deeplab_resnet34_ade20k_mmseg_policy.json"

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type="AutoMTLBranchedBackbone",
                  backbone="{{fileDirname}}/../../prototxt/deeplab_resnet34.prototxt",
                  policy=policy, task="segment_semantic", out_indices=(-1,)),
    decode_head=dict(in_channels=512, in_index=0, channels=512, dilations=(1, 12, 24, 36), num_classes=150),
    auxiliary_head=None,
)

train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))  # x 4 GPUs = 16
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
