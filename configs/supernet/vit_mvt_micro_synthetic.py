# Supernet training for search: a micro ViT-MVT space on synthetic scenes, sandwich sampling.
# About a minute on 2 CPU cores. Then search with its weights:
#   python tools/train.py configs/supernet/vit_mvt_micro_synthetic.py
#   (a search config's evaluator: dict(type="supernet", checkpoint="work_dirs/vit_mvt_micro_synthetic/supernet.pt"))
# An interrupted run continues with --resume (checkpoint every `checkpoint_every` steps).
_base_ = ["../_base_/spaces/vit_mvt_micro_2tasks.py"]
seed = 0
data = dict(size=64, n_train=96, n_val=32, batch_size=16, seed=0)
supernet_train = dict(steps=60, lr=2e-3, sampling="sandwich", n_random=1, checkpoint_every=20)
