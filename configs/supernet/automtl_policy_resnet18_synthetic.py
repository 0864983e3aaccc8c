# Supernet training for AutoMTL policy search: the ResNet-18 MTLModel trained with sandwich
# sampling of share/specialize/skip policies on synthetic scenes (a few minutes on 2 CPU cores).
#   python tools/train.py configs/supernet/automtl_policy_resnet18_synthetic.py
_base_ = ["../_base_/spaces/automtl_policy_resnet18_2tasks.py"]
seed = 0
data = dict(size=64, n_train=64, n_val=32, batch_size=16, seed=0)
supernet_train = dict(steps=20, lr=1e-3, sampling="sandwich", n_random=1, checkpoint_every=5)
