# Smoke test of tools/search.py: a tiny ViT-MVT supernet on synthetic scenes, trained for a
# few dozen sandwich steps, then a few generations of evolution; about a minute on CPU.
work_dir = "work_dirs/search_toy_synthetic"
seed = 0
study = "toy_synthetic"
_base_ = ["../_base_/spaces/vit_mvt_micro_2tasks.py"]
storage = None  # default: SQLite search.db in the work dir

evaluator = dict(
    type="supernet",
    data=dict(size=64, n_train=96, n_val=32, batch_size=16, seed=0),
    train=dict(steps=30, lr=2e-3, sampling="sandwich", n_random=1),  # cached in work_dir/supernet.pt
    n_val_batches=2,
    bn_batches=0,          # ViT-MVT has LayerNorm only; set > 0 for BatchNorm supernets
)
# T-Score-style sum of primary metrics: mIoU (higher better) minus depth abs. error (lower better)
fitness = dict(type="t_score")
search = dict(mode="evolution", budget=(280_000, 420_000), generations=4, population=10,
              top_k=3, n_mutations=5, n_crossovers=5, p_layer=0.2, p_global=0.4)
