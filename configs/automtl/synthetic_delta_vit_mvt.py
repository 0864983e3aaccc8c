# Delta sharing on a micro ViT-MVT (two blocks, width 32, 2×2 tokens at 32×32) on the synthetic
# scenes: semantic segmentation is the base network; depth and normals are separate networks whose
# attention (qkv, proj) and MLP (fc1, fc2) projections are sparse deltas on the base's
# (W_task = W_base + ΔW, 10 % of ΔW kept, delta activations below 0.15 zeroed at inference).
# Three steps: L0 deltas, fixed support, sparse delta activations. About a minute on 2 CPU cores.
# At this size the convolutional stem and patch embedding (per task, no deltas) dominate the MACs;
# list them in delta.layers (e.g. "stem.0", "stem.3", "stem.6" with the projections) to share them too.
# Run: python tools/train.py configs/automtl/synthetic_delta_vit_mvt.py --work-dir work_dirs/delta_vit
# Then: python -m automtl test configs/automtl/synthetic_delta_vit_mvt.py work_dirs/delta_vit/delta_act_train.pt
tasks = ["segment_semantic", "depth_zbuffer", "normal"]
data = dict(type="synthetic", size=32, n_train=256, n_val=64, batch_size=16)
model = dict(
    type="ViTMVTNetworks",
    space=dict(preset=None, name="micro", depths=(2,), embeds=(32,), heads=(1,), mlp_ratios=(2.0,), img_size=32),
)
trainer = dict(checkpoint_iters=100, print_iters=50, val_iters=0, weighting="fixed")
delta = dict(base="segment_semantic", density=0.1, threshold=0.15, mask="l0")
delta_train = dict(iters=100, lr=1e-3, l0_lambda=0.5, gate_lr=0.01)
delta_support_train = dict(iters=50, lr=1e-3)
delta_act_train = dict(iters=50, lr=3e-4, act_l1=0.05)
