# MLoRE decoder over the multi-level features of a micro ViT-MVT (three blocks, width 32) on the
# synthetic scenes: the maps after blocks 0, 1 and 2 are the decoder's levels, every linear shared.
# Run: python tools/train.py configs/automtl/synthetic_mlore_vit_mvt.py --work-dir work_dirs/mlore_vit
tasks = ["segment_semantic", "depth_zbuffer"]
data = dict(type="synthetic", size=64, n_train=256, n_val=64, batch_size=16)
model = dict(
    type="MLoReModel",
    backbone=dict(type="vit_mvt", preset=None, name="micro", depths=(3,), embeds=(32,), heads=(1, 2),
                  mlp_ratios=(2.0,), img_size=64),
    levels=(0, 1, 2),
    decoder=dict(channels=32, ranks=(4, 8, 12, 16, 20, 24, 28, 32), top_k=5, blocks=2, balance_weight=3e-4),
    input_shape=(1, 3, 64, 64),
)
trainer = dict(checkpoint_iters=100, print_iters=50, val_iters=0, weighting="fixed")
sample = dict(all="share")
post_train = dict(iters=200, lr=1e-3)
