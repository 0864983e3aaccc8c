"""The supernet config runner behind ``python -m automtl train``: train an elastic supernet for
search, resumably.

A supernet config names the space, the data and the training (``supernet_train`` marks it)::

    seed = 0
    space = dict(type="vit_mvt", ...)           # any registered space (vit_mvt, automtl_policy…)
    supernet = dict()                           # optional arguments of space.build_supernet
    data = dict(type="synthetic", size=64, n_train=256, batch_size=16)
    supernet_train = dict(steps=1000, lr=1e-3, sampling="sandwich", n_random=2,
                          checkpoint_every=100)

It writes ``<work_dir>/supernet.pt`` (``{"state_dict", "meta", "history"}``), which a search
config uses as ``evaluator = dict(type="supernet", checkpoint=".../supernet.pt")``, and keeps
``<work_dir>/checkpoints/supernet_latest.pt`` so an interrupted run continues (``--resume``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automtl.config import check_top_level, dump_config, load_config, plain, validate
from automtl.errors import ConfigError
from automtl.io import clean_stale_temps
from automtl.train.settings import SupernetTrainSettings

SECTIONS = ("space", "supernet", "data", "supernet_train")


def run_supernet_config(cfg: Mapping[str, Any] | str | os.PathLike[str], *,
                        work_dir: str | os.PathLike[str], seed: int | None = None,
                        resume: bool = False, device: str | None = None,
                        cfg_options: Any = None) -> dict[str, Any]:
    """Train the config's supernet; returns ``{"supernet": path, "steps", "final_loss", ...}``.

    Without ``resume`` an existing checkpoint is discarded and training starts over.
    """
    import torch

    from automtl.data import build_data
    from automtl.io import atomic_save, atomic_write_text
    from automtl.registry import SPACES, build
    from automtl.spaces.base import SupernetSpace
    from automtl.train.supernet import train_supernet

    path = str(cfg) if isinstance(cfg, (str, os.PathLike)) else None
    raw = plain(load_config(path, cfg_options) if path is not None else cfg)
    check_top_level(raw, SECTIONS, path=path, required=("space", "supernet_train"))
    train = validate(SupernetTrainSettings, raw["supernet_train"], key="supernet_train", path=path)
    seed = int(raw.get("seed", 0) if seed is None else seed)
    supernet_kw = raw.get("supernet") or {}
    if not isinstance(supernet_kw, Mapping):
        raise ConfigError("must be a dict of space.build_supernet arguments", key="supernet",
                          path=path, value=supernet_kw)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(work)  # left by a run killed mid-write
    dump_config({**raw, "seed": seed}, work / "config.py")
    ckpt = work / "checkpoints" / "supernet_latest.pt"
    if not resume:
        ckpt.unlink(missing_ok=True)
    space = build(SPACES, raw["space"], key="space")
    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"space '{space.name}' has no supernet to train", key="space.type",
                          path=path)
    data = dict(raw.get("data") or {})
    loaders, _ = build_data(data, space.tasks, seed=seed)
    torch.manual_seed(seed)
    net = space.build_supernet(**dict(supernet_kw))
    history = train_supernet(net, space, loaders, seed=seed, device=device, checkpoint=ckpt,
                             **train.kwargs())
    meta = {"space": space.signature(), "data": data, "train": train.kwargs(), "seed": seed,
            "supernet": dict(supernet_kw)}
    out = atomic_save({"state_dict": net.state_dict(), "meta": json.dumps(meta, default=str),
                       "history": history}, work / "supernet.pt")
    atomic_write_text(work / "supernet_history.json", json.dumps(history))
    return {"supernet": str(out), "steps": len(history),
            "final_loss": history[-1] if history else None, "tasks": list(space.tasks)}
