# MLoRE decoder (mixture of low-rank experts) over a shared TinyResNet on the synthetic scenes:
# the backbone's three stage ends are the decoder's levels; every layer shared (no AutoMTL policy
# search: add pre_train / alter_train_with_reg sections for AutoMTL's backbone + MLoRE).
# Run: python tools/train.py configs/automtl/synthetic_mlore_tinyresnet.py --work-dir work_dirs/mlore_tiny
tasks = ["segment_semantic", "depth_zbuffer", "normal"]
data = dict(type="synthetic", size=32, n_train=512, n_val=128, batch_size=16)
model = dict(
    type="MLoReModel",
    backbone=dict(type="TinyResNet", widths=(16, 32, 64)),
    levels=(0, 1, 2),
    decoder=dict(channels=32, ranks=(4, 8, 12, 16, 20, 24, 28, 32), top_k=5, blocks=2, mask="before",
                 balance_weight=3e-4),
    input_shape=(1, 3, 32, 32),
)
trainer = dict(checkpoint_iters=100, print_iters=50, val_iters=0, weighting="fixed")
sample = dict(all="share")
post_train = dict(iters=300, lr=1e-3)
