"""``tools/train.py`` for supernet configs: train an elastic supernet for search, resumably.

A supernet config names the space, the data and the training (``supernet_train`` marks it)::

    seed = 0
    space = dict(type="vit_mvt", ...)           # any registered space (vit_mvt, automtl_policy…)
    supernet = dict()                           # optional builder arguments (ViT-MVT supernet)
    data = dict(size=64, n_train=256, batch_size=16)     # synthetic scenes of the space's tasks
    supernet_train = dict(steps=1000, lr=1e-3, sampling="sandwich", n_random=2,
                          checkpoint_every=100)

It writes ``<work_dir>/supernet.pt`` (``{"state_dict", "meta", "history"}``), which a search
config uses as ``evaluator = dict(type="supernet", checkpoint=".../supernet.pt")``, and keeps
``<work_dir>/checkpoints/supernet_latest.pt`` so an interrupted run continues (``--resume``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from automtl.errors import ConfigError
from automtl.search.supernet_job import DATA_DEFAULTS

MARKER = "supernet_train"
_KEYS = {"seed", "space", "supernet", "data", MARKER}


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A config file as a plain dict (:class:`ConfigError` naming the file if it cannot be read)."""
    from mmengine.config import Config

    if not Path(path).is_file():
        raise ConfigError("config file not found", path=str(path))
    try:
        return Config.fromfile(str(path)).to_dict()
    except Exception as exc:  # syntax errors, bad imports inside the config
        raise ConfigError(f"cannot load config: {type(exc).__name__}: {exc}", path=str(path)) from exc


def is_supernet_config(cfg: Mapping[str, Any]) -> bool:
    """Whether ``cfg`` describes supernet training (it has a ``supernet_train`` section)."""
    return MARKER in cfg


def run_supernet_config(cfg: Mapping[str, Any], *, work_dir: str | os.PathLike[str],
                        seed: int | None = None, resume: bool = False,
                        device: str | None = None) -> dict[str, Any]:
    """Train the config's supernet; returns ``{"supernet": path, "steps", "final_loss", ...}``.

    Without ``resume`` an existing checkpoint is discarded and training starts over.
    """
    from automtl.data.synthetic import make_loaders
    from automtl.search.registry import build_space
    from automtl.search.supernet_job import build_net
    from automtl.search.supernet_train import train_supernet
    from automtl.train.checkpoint import atomic_save

    unknown = sorted(set(cfg) - _KEYS - {k for k in cfg if k.startswith("_")})
    if unknown:
        raise ConfigError(f"unknown top-level keys {unknown}; known: {sorted(_KEYS)}", key=unknown[0])
    if "space" not in cfg:
        raise ConfigError("missing", key="space")
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    data = {**DATA_DEFAULTS, **dict(cfg.get("data") or {})}
    bad = sorted(set(data) - set(DATA_DEFAULTS))
    if bad:
        raise ConfigError(f"unknown data setting; known: {sorted(DATA_DEFAULTS)}", key=f"data.{bad[0]}")
    train = dict(cfg[MARKER] or {})
    if "steps" not in train:
        raise ConfigError("missing", key=f"{MARKER}.steps")

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "checkpoints" / "supernet_latest.pt"
    if not resume:
        ckpt.unlink(missing_ok=True)
    space = build_space(cfg["space"])
    loaders, _ = make_loaders(space.tasks, **data)
    import torch

    torch.manual_seed(seed)
    net = build_net(space, cfg.get("supernet"))
    try:
        history = train_supernet(net, space, loaders, seed=seed, device=device, checkpoint=ckpt, **train)
    except TypeError as exc:
        raise ConfigError(f"bad supernet_train setting: {exc}", key=MARKER) from exc
    meta = {"space": space.signature(), "data": data, "train": train, "seed": seed,
            "supernet": dict(cfg.get("supernet") or {})}
    out = atomic_save({"state_dict": net.state_dict(), "meta": json.dumps(meta, default=str),
                       "history": history}, work / "supernet.pt")
    (work / "supernet_history.json").write_text(json.dumps(history), encoding="utf-8")
    return {"supernet": str(out), "steps": len(history),
            "final_loss": history[-1] if history else None, "tasks": list(space.tasks)}
