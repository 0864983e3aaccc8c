# AutoMTL's own setting on the synthetic scenes: DeepLab-ResNet34 (dilated, output stride 8) with ASPP heads,
# 128x128 images, 4 tasks. A GPU-sized run (hours on CPU).
# Run: python tools/train.py configs/automtl/synthetic_deeplab_resnet34.py --work-dir work_dirs/deeplab34
tasks = ["segment_semantic", "depth_zbuffer", "normal", "edge_texture"]
data = dict(type="synthetic", size=128, n_train=4096, n_val=256, batch_size=16)
model = dict(
    backbone=dict(type="prototxt", path="prototxt/deeplab_resnet34.prototxt"),
    head=dict(type="ASPPHead"),
    input_shape=(1, 3, 128, 128),
    bn_per_task=True,
)
trainer = dict(checkpoint_iters=500, print_iters=100, val_iters=1000, weighting="fixed")
pre_train = dict(iters=10000, lr=1e-4)
alter_train_with_reg = dict(iters=10000, policy_network_iters=(100, 400), policy_lr=0.01, network_lr=1e-4,
                            loss_lambda=dict(policy=5e-4))
sample = dict(n=50, budget=0.6, score=True, seed=0)
post_train = dict(iters=15000, lr=1e-3, decay_lr_freq=4000, decay_lr_rate=0.5)
