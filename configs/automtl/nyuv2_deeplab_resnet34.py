# AutoMTL on NYUv2 (segmentation, surface normals, depth) with DeepLab-ResNet34 and ASPP heads, in the settings
# of AutoMTL's NYUv2 notebook (exps_ipynb/Experiments-NYUv2-Training.ipynb). A GPU-sized run.
# Run: python tools/train.py configs/automtl/nyuv2_deeplab_resnet34.py --work-dir work_dirs/nyuv2 \
#          --cfg-options data.data_root=/path/to/NYUv2
_base_ = ["../_base_/datasets/nyuv2.py"]  # tasks and data (crop 321, batch 16)
# AutoMTL's NYU_v2 loader reads the normal PNG with cv2.imread (channels B, G, R) and its normal loss and
# metric compare against the raw 0-255 vector scaled to unit length: decode the normals the same way, so the
# mean angle error is comparable with AutoMTL's NYUv2 table (encoding="standard" is R, G, B as 2v/255 - 1).
data = dict(encoding="automtl")

model = dict(
    backbone="torchvision:deeplab_resnet34",  # AutoMTL's deeplab_resnet34_adashare.prototxt (dilated, stride 8)
    head=dict(type="ASPPHead", mid_channels=1024, dilations=(6, 12, 18, 24)),  # AutoMTL's ASPPHeadNode
    input_shape=(1, 3, 321, 321),  # the train crop
    bn_per_task=True,  # AutoMTL's notebook: MTLModel(prototxt, headsDict, BNsp=True)
    num_classes=40,  # AutoMTL's NYUv2 notebook: task_cls_num["segment_semantic"] = 40
)
# Optimisers: the phases' defaults are AutoMTL's Trainer's (pre/post-train Adam betas (0.5, 0.999), weight decay
# 1e-4; policy training SGD momentum 0.9, weight decay 1e-4 for the weights, Adam weight decay 5e-4 for the policy;
# regulariser sharpness 6), so no optimizer= is set here.
# weighting "fixed": the loss_lambda-weighted sum AutoMTL uses; policy_split 0.5: its train1/train2 halves
trainer = dict(print_iters=100, val_iters=1000, checkpoint_iters=1000, weighting="fixed", policy_split=0.5)
# AutoMTL's NYUv2 notebook: pre_train(iters=10000, lr=0.001), task losses summed unweighted
pre_train = dict(iters=10000, lr=1e-3, loss_lambda=dict(segment_semantic=1, normal=1, depth_zbuffer=1))
alter_train_with_reg = dict(  # AutoMTL's NYUv2 notebook: alter_train_with_reg(...)
    iters=20000,
    policy_network_iters=(50, 50),
    policy_lr=0.01,
    network_lr=1e-3,
    loss_lambda=dict(segment_semantic=3, normal=20, depth_zbuffer=3, policy=0.003),
)
# AutoMTL's experiments_sample.py: one policy drawn from the learned distribution (score=False: no validation pick)
sample = dict(n=1, score=False, seed=0)
post_train = dict(  # AutoMTL's NYUv2 notebook: post_train(...) of the sampled policy
    iters=30000,
    lr=1e-3,
    decay_lr_freq=4000,  # StepLR: halve the learning rate every 4000 iterations
    decay_lr_rate=0.5,
    loss_lambda=dict(segment_semantic=5, normal=20, depth_zbuffer=5),  # the notebook's post-train weights
)
