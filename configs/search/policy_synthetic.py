# AutoMTL policy search: one share/specialize/skip gene per ResNet-18 layer x task, under a
# parameter budget, scored with inherited weights of a briefly trained policy supernet
# (sandwich: all-specialise, smallest, random policies) on synthetic scenes, with BatchNorm
# recalibration. A few minutes on CPU; point `checkpoint` at a trained MTLModel for real use.
work_dir = "work_dirs/search_policy_synthetic"
seed = 0
study = "policy_synthetic"
_base_ = ["../_base_/spaces/automtl_policy_resnet18_2tasks.py"]

evaluator = dict(
    type="supernet",
    data=dict(size=64, n_train=64, n_val=32, batch_size=16, seed=0),
    train=dict(steps=10, lr=1e-3, sampling="sandwich", n_random=1),
    n_val_batches=1,
    bn_batches=2,   # AutoMTL layers carry per-task BatchNorm: recalibrate per candidate
)
fitness = dict(type="t_score")
# all-share ResNet-18 + two heads: 11.5M parameters, all-specialise 22.6M, skip-heavy ones less
search = dict(mode="evolution", budget=(11_000_000, 14_000_000), generations=3, population=8,
              top_k=3, n_mutations=4, n_crossovers=4)
