"""Config-driven AutoMTL runs: build data, model and trainer from an mmengine-style config and
run pre-train → policy-train → sample → post-train → evaluate (``tools/train.py``).

A config (``configs/automtl/*.py``) holds plain variables::

    tasks = ["segment_semantic", "depth_zbuffer", "normal"]
    data = dict(type="synthetic", size=32, n_train=512, n_val=128, batch_size=16)
    model = dict(backbone=dict(type="TinyResNet", widths=(16, 32, 64)), head=dict(type="ConvHead"),
                 input_shape=(1, 3, 32, 32))
    trainer = dict(checkpoint_iters=100, print_iters=50, weighting="fixed")
    pre_train = dict(iters=200, lr=1e-3)
    alter_train_with_reg = dict(iters=200, policy_network_iters=(20, 40), network_lr=1e-3)
    sample = dict(n=20, budget=0.6, score=True)
    post_train = dict(iters=300, lr=1e-3)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from automtl.errors import ConfigError

SECTIONS = ("tasks", "data", "model", "trainer", "pre_train", "alter_train_with_reg", "sample", "post_train")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read an mmengine-style ``.py`` config into a plain dict (ConfigError for unknown/missing keys)."""
    from mmengine.config import Config

    path = str(path)
    if not Path(path).is_file():
        raise ConfigError("config file not found", path=path)
    cfg = Config.fromfile(path).to_dict()
    unknown = [k for k in cfg if k not in SECTIONS and not k.startswith("_")]
    if unknown:
        raise ConfigError(f"unknown top-level keys {unknown}; known: {list(SECTIONS)}", path=path)
    for key in ("tasks", "model"):
        if key not in cfg:
            raise ConfigError("missing", key=key, path=path)
    return cfg


def dump_config(cfg: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the resolved config as a ``.py`` file that :func:`load_config` reads back."""
    from mmengine.config import Config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Config(dict(cfg)).dump(str(path))
    return path


def run_config(cfg: Mapping[str, Any] | str | os.PathLike, *, work_dir: str | os.PathLike,
               seed: int | None = None, resume: bool = False, device: str | None = None) -> dict[str, Any]:
    """Run every phase the config names and return ``{"results", "params", "policy", ...}``.

    Writes into ``work_dir``: ``config.py`` (resolved), phase weights, checkpoints, the sampled
    ``policy.json`` + ``policy.png``, ``train.log``, tensorboard events and ``results.json``.
    With ``resume=True`` finished phases are skipped and an interrupted one continues.
    """
    from automtl.metrics import default_metrics
    from automtl.supernet import Policy
    from automtl.train.builders import build_data, build_model
    from automtl.train.checkpoint import seed_everything
    from automtl.train.losses import default_criteria
    from automtl.train.sampling import choose_policy, write_choice
    from automtl.train.trainer import Trainer

    cfg = load_config(cfg) if isinstance(cfg, (str, os.PathLike)) else dict(cfg)
    if seed is not None:
        cfg["seed"] = seed
    seed = int(cfg.pop("seed", 0))
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    tasks = list(cfg["tasks"])
    dump_config({**cfg, "_seed": seed, "_work_dir": str(work)}, work / "config.py")
    seed_everything(seed)
    train, val = build_data(cfg.get("data", {}), tasks, seed=seed)
    model = build_model(cfg["model"], tasks)
    metrics = default_metrics(tasks)
    trainer = Trainer(model, train, val, default_criteria(tasks), metrics, work_dir=work, seed=seed,
                      device=device, **dict(cfg.get("trainer", {})))
    out: dict[str, Any] = {"tasks": tasks, "seed": seed}
    try:
        if "pre_train" in cfg:
            trainer.pre_train(**_phase(cfg, "pre_train"), resume=resume)
        if "alter_train_with_reg" in cfg:
            trainer.alter_train_with_reg(**_phase(cfg, "alter_train_with_reg"), resume=resume)
        policy = _choose(cfg, trainer, model, val, metrics, work, choose_policy, write_choice, Policy)
        if "post_train" in cfg:
            trainer.post_train(**_phase(cfg, "post_train"), reload=policy, resume=resume)
            out["results"] = trainer.validate("fixed")
        else:
            out["results"] = trainer.validate("fixed", policy=policy)
        out["params"] = model.count_params(policy)
        out["policy"] = str(work / "policy.json")
    finally:
        trainer.close()
    if trainer.dist.is_main:
        tmp = work / ".results.json.tmp"
        tmp.write_text(json.dumps(out, indent=2, default=str))
        os.replace(tmp, work / "results.json")
    return out


def _phase(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    args = dict(cfg[name])
    if "policy_network_iters" in args:
        args["policy_network_iters"] = tuple(args["policy_network_iters"])
    return args


def _choose(cfg: Mapping[str, Any], trainer: Any, model: Any, val: Any, metrics: Any, work: Path,
            choose_policy: Any, write_choice: Any, policy_cls: Any) -> Any:
    """The policy of the post-train phase: sampled per ``cfg["sample"]`` (deterministic from the weights)."""
    sample = dict(cfg.get("sample", {}))
    if sample.get("policy"):  # a given policy file
        return policy_cls.load(sample["policy"], model=model)
    if "alter_train_with_reg" not in cfg:
        return policy_cls.all(model, sample.get("all", "share"))
    score = bool(sample.pop("score", True))
    report = choose_policy(model, int(sample.pop("n", 20)), seed=int(sample.pop("seed", 0)),
                           budget=sample.pop("budget", None), max_params=sample.pop("max_params", None),
                           val_loaders=val if score else None, metrics=metrics if score else None,
                           device=trainer.device, **sample)
    if trainer.dist.is_main:
        write_choice(report, work)
        trainer.monitor.log(f"sampled policy: {report.chosen.params} params of {report.reference_params} "
                            f"(limit {report.max_params}), scored by {report.scored_by}; {len(report.candidates)} "
                            f"candidates within budget")
    return report.chosen.policy
