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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automtl.config import check_top_level, dump_config, load_config, plain, validate
from automtl.errors import ConfigError
from automtl.train.distributed import env_rank, lock_main_work_dir
from automtl.train.fingerprint import SUPERNET_MAY_CHANGE, Fingerprint
from automtl.train.settings import SupernetTrainSettings

SECTIONS = ("space", "supernet", "data", "supernet_train")


def run_supernet_config(cfg: Mapping[str, Any] | str | os.PathLike[str], *,
                        work_dir: str | os.PathLike[str], seed: int | None = None,
                        resume: bool = False, device: str | None = None,
                        cfg_options: Any = None, allow_changed: Sequence[str] = ()) -> dict[str, Any]:
    """Train the config's supernet; returns ``{"supernet": path, "steps", "final_loss", ...}``.

    The run holds the work dir's lock throughout (:class:`WorkDirBusyError` while another run
    holds it). Without ``resume`` an existing checkpoint is discarded and training starts over;
    with it, the checkpoint's settings must match (:func:`fingerprint`; ``allow_changed`` names
    more keys that may differ).
    """
    path = str(cfg) if isinstance(cfg, (str, os.PathLike)) else None
    raw = plain(load_config(path, cfg_options) if path is not None else cfg)
    check_top_level(raw, SECTIONS, path=path, required=("space", "supernet_train"))
    train = validate(SupernetTrainSettings, raw["supernet_train"], key="supernet_train", path=path)
    raw["seed"] = int(raw.get("seed", 0) if seed is None else seed)
    if not isinstance(raw.get("supernet") or {}, Mapping):
        raise ConfigError("must be a dict of space.build_supernet arguments", key="supernet",
                          path=path, value=raw["supernet"])
    with lock_main_work_dir(work_dir, purpose="train"):
        return _train(raw, train, Path(work_dir), path=path, resume=resume, device=device,
                      fingerprint=fingerprint(raw, train, allow_changed))


def fingerprint(raw: Mapping[str, Any], train: SupernetTrainSettings,
                allow_changed: Sequence[str] = ()) -> Fingerprint:
    """The run-defining settings of a supernet config (space, supernet, data, seed, training),
    less :data:`~automtl.train.fingerprint.SUPERNET_MAY_CHANGE` and ``allow_changed``."""
    sections = {k: raw.get(k) for k in ("space", "supernet", "data", "seed", "custom_imports")}
    return Fingerprint.of({**sections, "supernet_train": train},
                          may_change=(*SUPERNET_MAY_CHANGE, *allow_changed))


def _train(raw: dict[str, Any], train: SupernetTrainSettings, work: Path, *, path: str | None,
           resume: bool, device: str | None, fingerprint: Fingerprint) -> dict[str, Any]:
    """Build the space, data and supernet of a checked config and train it (rank 0 writes)."""
    import torch

    from automtl.data import build_data
    from automtl.io import atomic_save, atomic_write_text
    from automtl.registry import SPACES, build
    from automtl.spaces.base import SupernetSpace
    from automtl.train.supernet import train_supernet

    seed, main = raw["seed"], env_rank() == 0
    if main:
        dump_config(raw, work / "config.py")
    ckpt = work / "checkpoints" / "supernet_latest.pt"
    if not resume and main:
        ckpt.unlink(missing_ok=True)
    space = build(SPACES, raw["space"], key="space")
    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"space '{space.name}' has no supernet to train", key="space.type",
                          path=path)
    data = dict(raw.get("data") or {})
    loaders, _ = build_data(data, space.tasks, seed=seed)
    torch.manual_seed(seed)
    supernet_kw = dict(raw.get("supernet") or {})
    net = space.build_supernet(**supernet_kw)
    history = train_supernet(net, space, loaders, seed=seed, device=device, checkpoint=ckpt,
                             fingerprint=fingerprint, history_path=work / "supernet_history.json",
                             **train.kwargs())
    meta = {"space": space.signature(), "data": data, "train": train.kwargs(), "seed": seed,
            "supernet": supernet_kw}
    out = work / "supernet.pt"
    if main:
        atomic_save({"state_dict": net.state_dict(), "meta": json.dumps(meta, default=str),
                     "history": history}, out)
        atomic_write_text(work / "supernet_history.json", json.dumps(history))
    return {"supernet": str(out), "steps": len(history),
            "final_loss": history[-1] if history else None, "tasks": list(space.tasks)}
