# AutoMTL on the synthetic scenes with torchvision's ResNet-18 (random init) at 64x64 (longer; GPU advised).
# Run: python tools/train.py configs/automtl/synthetic_resnet18.py --work-dir work_dirs/synthetic_resnet18
tasks = ["segment_semantic", "depth_zbuffer", "normal", "edge_texture"]
data = dict(type="synthetic", size=64, n_train=2048, n_val=256, batch_size=32)
model = dict(
    backbone=dict(type="torchvision", name="resnet18"),
    head=dict(type="ASPPHead"),
    input_shape=(1, 3, 64, 64),
    bn_per_task=True,
)
trainer = dict(checkpoint_iters=500, print_iters=100, val_iters=1000, weighting="fixed")
pre_train = dict(iters=4000, lr=1e-3)
alter_train_with_reg = dict(iters=4000, policy_network_iters=(100, 400), policy_lr=0.01, network_lr=1e-3,
                            loss_lambda=dict(policy=5e-4))
sample = dict(n=50, budget=0.6, score=True, seed=0)
post_train = dict(iters=6000, lr=1e-3, decay_lr_freq=2000, decay_lr_rate=0.5)
