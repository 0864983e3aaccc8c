# Evolution on the synthetic layered space with an exact fitness (known optimum); seconds on CPU.
work_dir = "work_dirs/search_toy_exact"
seed = 0
study = "toy_exact"
storage = None  # default: SQLite search.db in the work dir

space = dict(type="toy_layered", tasks=("cls", "seg"), depths=(2, 3, 4), embeds=(16, 24, 32),
             ratios=(2, 3, 4), seed=0)
evaluator = dict(type="toy", delay=0.0)
fitness = dict(type="t_score")
search = dict(mode="evolution", budget=(20_000, 40_000), generations=10, population=20, top_k=5,
              n_mutations=10, n_crossovers=10, p_layer=0.2, p_global=0.4)
