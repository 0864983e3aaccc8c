"""Config-level assembly of a supernet evaluator: data, supernet, weights, evaluator.

Weights come from ``checkpoint`` (a state dict file) or, without one, from a short supernet
training on the data (``train=dict(steps=…, sampling="sandwich")``) cached as
``<work_dir>/supernet.pt`` together with what produced it, so resumed searches and extra
workers score with the very same weights instead of training their own.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from automtl.errors import CheckpointError, ConfigError
from automtl.search.space import SearchSpace
from automtl.search.supernet_eval import SupernetEvaluator
from automtl.search.supernet_train import train_supernet

LOG = logging.getLogger("automtl.search")

DATA_DEFAULTS = dict(size=64, n_train=256, n_val=64, batch_size=16, seed=0)


def build_net(space: SearchSpace, supernet: Mapping[str, Any] | None) -> torch.nn.Module:
    """The weight-sharing network of ``space``: a policy space's ``MTLModel``, else a ViT-MVT
    supernet built with the ``supernet`` arguments."""
    if hasattr(space, "model"):  # a policy space carries its MTLModel
        return space.model  # type: ignore[attr-defined]
    from automtl.search.vit_space import build_vit_supernet

    return build_vit_supernet(space, **dict(supernet or {}))


def _load_state(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read supernet weights '{path}': {exc}") from exc
    return obj


def build_supernet_evaluator(space: SearchSpace, *, work_dir: str | os.PathLike[str] | None = None,
                             data: Mapping[str, Any] | None = None, checkpoint: str | None = None,
                             train: Mapping[str, Any] | None = None,
                             supernet: Mapping[str, Any] | None = None, n_val_batches: int = 4,
                             bn_batches: int = 0, device: str | None = None,
                             seed: int = 0) -> SupernetEvaluator:
    """Synthetic loaders for the space's tasks, the supernet with trained weights, and the
    evaluator scoring candidates on a fixed validation subset."""
    from automtl.data.synthetic import make_loaders

    dcfg = {**DATA_DEFAULTS, **dict(data or {})}
    unknown = sorted(set(dcfg) - set(DATA_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown data setting; known: {sorted(DATA_DEFAULTS)}",
                          key=f"evaluator.data.{unknown[0]}")
    train_loaders, val_loaders = make_loaders(space.tasks, **dcfg)
    torch.manual_seed(seed)
    net = build_net(space, supernet)
    if checkpoint is not None:
        state = _load_state(Path(checkpoint))
        net.load_state_dict(state.get("state_dict", state))
        LOG.info("supernet weights from %s", checkpoint)
    elif train:
        tcfg = dict(train)
        meta = {"space": space.signature(), "data": dcfg, "train": tcfg, "seed": seed,
                "supernet": dict(supernet or {})}
        digest = hashlib.sha1(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()
        cache = Path(work_dir) / "supernet.pt" if work_dir is not None else None
        if cache is not None and cache.exists():
            state = _load_state(cache)
            if state.get("digest") == digest:
                net.load_state_dict(state["state_dict"])
                LOG.info("supernet weights from cache %s", cache)
                cache = None  # nothing to write
            else:
                LOG.info("supernet cache %s is from other settings: training again", cache)
        else:
            state = None
        if state is None or state.get("digest") != digest:
            train_supernet(net, space, train_loaders, seed=seed, device=device, **tcfg)
            if cache is not None:
                tmp = cache.with_name(cache.name + ".tmp")
                torch.save({"digest": digest, "meta": json.dumps(meta, default=str),
                            "state_dict": net.state_dict()}, tmp)
                os.replace(tmp, cache)
    else:
        LOG.warning("supernet evaluator without checkpoint or training: scores reflect random "
                    "weights")
    return SupernetEvaluator(net, space, val_loaders, n_val_batches=n_val_batches,
                             train_loaders=train_loaders, bn_batches=bn_batches, device=device)
