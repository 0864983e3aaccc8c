# AutoMTL on CityScapes (segmentation, depth) with DeepLab-ResNet34 and ASPP heads, in the settings of AutoMTL's
# CityScapes notebook (exps_ipynb/Experiments-Cityscapes-Training.ipynb). A GPU-sized run.
# Run: python tools/train.py configs/automtl/cityscapes_deeplab_resnet34.py --work-dir work_dirs/cityscapes \
#          --cfg-options data.data_root=/path/to/Cityscapes
_base_ = ["../_base_/datasets/cityscapes.py"]  # tasks and data (crop 224, batch 16)

model = dict(
    backbone="torchvision:deeplab_resnet34",  # AutoMTL's deeplab_resnet34_adashare.prototxt (dilated, stride 8)
    head=dict(type="ASPPHead", mid_channels=1024, dilations=(6, 12, 18, 24)),  # AutoMTL's ASPPHeadNode
    input_shape=(1, 3, 224, 224),  # the train crop
    bn_per_task=True,  # AutoMTL's notebook: MTLModel(prototxt, headsDict, BNsp=True)
    num_classes=19,  # AutoMTL's CityScapes notebook: task_cls_num["segment_semantic"] = 19
)
# weighting "fixed": the loss_lambda-weighted sum AutoMTL uses; policy_split 0.5: its train1/train2 halves
trainer = dict(print_iters=100, val_iters=1000, checkpoint_iters=1000, weighting="fixed", policy_split=0.5)
# AutoMTL's CityScapes notebook: pre_train(iters=10000, lr=0.0001), task losses summed unweighted
pre_train = dict(iters=10000, lr=1e-4, loss_lambda=dict(segment_semantic=1, depth_zbuffer=1))
alter_train_with_reg = dict(  # AutoMTL's CityScapes notebook (and README): alter_train_with_reg(...)
    iters=20000,
    policy_network_iters=(100, 400),
    policy_lr=0.01,
    network_lr=1e-4,
    loss_lambda=dict(segment_semantic=1, depth_zbuffer=1, policy=0.0005),
)
# AutoMTL's experiments_sample.py: one policy drawn from the learned distribution (score=False: no validation pick)
sample = dict(n=1, score=False, seed=0)
post_train = dict(  # AutoMTL's experiments_sample.py defaults (the notebook's own run went to 40000 iterations)
    iters=30000,
    lr=1e-3,
    decay_lr_freq=4000,  # StepLR: halve the learning rate every 4000 iterations
    decay_lr_rate=0.5,
    loss_lambda=dict(segment_semantic=1, depth_zbuffer=1),  # AutoMTL's CityScapes notebook
)
