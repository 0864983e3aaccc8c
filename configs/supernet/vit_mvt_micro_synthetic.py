# Supernet training for search: a micro ViT-MVT space on synthetic scenes, sandwich sampling.
# About a minute on 2 CPU cores. Then search with its weights:
#   python tools/train.py configs/supernet/vit_mvt_micro_synthetic.py
#   (a search config's evaluator: dict(type="supernet", checkpoint="work_dirs/vit_mvt_micro_synthetic/supernet.pt"))
# An interrupted run continues with --resume (checkpoint every `checkpoint_every` steps).
seed = 0
space = dict(type="vit_mvt", preset=None, name="micro", tasks=("segment_semantic", "depth_zbuffer"),
             num_outputs=dict(segment_semantic=5, depth_zbuffer=1),
             depths=(2, 3), embeds=(32, 48), heads=(1, 2), mlp_ratios=(2.0, 3.0), img_size=64)
data = dict(size=64, n_train=96, n_val=32, batch_size=16, seed=0)
supernet_train = dict(steps=60, lr=2e-3, sampling="sandwich", n_random=1, checkpoint_every=20)
