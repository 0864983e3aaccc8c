# Delta sharing on the built-in synthetic scenes: semantic segmentation is the base task; depth
# and normals take every conv layer as a sparse delta on it (W_task = W_base + ΔW, 10 % of ΔW kept,
# delta activations below 0.15 zeroed at inference). Three steps: L0 deltas, fixed support,
# sparse delta activations. A few minutes on 2 CPU cores.
# Run: python tools/train.py configs/automtl/synthetic_delta_tinyresnet.py --work-dir work_dirs/delta_tiny
tasks = ["segment_semantic", "depth_zbuffer", "normal"]
data = dict(type="synthetic", size=32, n_train=512, n_val=128, batch_size=16)
model = dict(
    backbone=dict(type="TinyResNet", widths=(16, 32, 64)),
    head=dict(type="ConvHead", mid_channels=32),
    input_shape=(1, 3, 32, 32),
    bn_per_task=True,
)
trainer = dict(checkpoint_iters=100, print_iters=50, val_iters=0, weighting="fixed")
delta = dict(base="segment_semantic", density=0.1, threshold=0.15, mask="l0")
delta_train = dict(iters=300, lr=1e-3, l0_lambda=0.5, gate_lr=0.01)
delta_support_train = dict(iters=150, lr=1e-3)
delta_act_train = dict(iters=150, lr=3e-4, act_l1=0.05)
