# AutoMTL on the built-in synthetic scenes with a small ResNet: about 5 minutes on 2 CPU cores.
# Run: python tools/train.py configs/automtl/synthetic_tinyresnet.py --work-dir work_dirs/synthetic_tinyresnet
tasks = ["segment_semantic", "depth_zbuffer", "normal"]
data = dict(type="synthetic", size=32, n_train=512, n_val=128, batch_size=16)
model = dict(
    backbone=dict(type="TinyResNet", widths=(16, 32, 64)),
    head=dict(type="ConvHead", mid_channels=32),
    input_shape=(1, 3, 32, 32),
    bn_per_task=True,
)
trainer = dict(checkpoint_iters=100, print_iters=50, val_iters=0, weighting="fixed")
pre_train = dict(iters=200, lr=1e-3)
alter_train_with_reg = dict(iters=200, policy_network_iters=(20, 40), policy_lr=0.01, network_lr=1e-3,
                            loss_lambda=dict(policy=5e-4))
sample = dict(n=20, budget=0.6, score=True, seed=0)
post_train = dict(iters=300, lr=1e-3)
