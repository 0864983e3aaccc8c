"""The AutoMTL config runner behind ``python -m automtl train``: build data, model and trainer from
a config and run pre-train → policy-train → sample → post-train → evaluate.

A config (``configs/automtl/*.py``) holds one section per step; each section is checked
against its schema (:mod:`automtl.train.settings`) before anything is built::

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automtl.checks import check_seed
from automtl.config import check_top_level, dump_config, load_config, plain, validate
from automtl.train.distributed import env_rank, lock_main_work_dir
from automtl.train.fingerprint import AUTOMTL_MAY_CHANGE, Fingerprint
from automtl.train.settings import (
    PolicyTrainSettings,
    PostTrainSettings,
    PreTrainSettings,
    SampleSettings,
    TrainerSettings,
    unique_tasks,
)

SECTIONS = ("tasks", "data", "model", "trainer", "pre_train", "alter_train_with_reg", "sample",
            "post_train")
#: the sections of consecutive steps: a phase's checkpoint leaves out the settings of later ones
STAGES = ("pre_train", "alter_train_with_reg", "sample", "post_train")


@dataclass
class AutoMTLPlan:
    """A checked AutoMTL config: every section validated, defaults filled."""

    tasks: list[str]
    seed: int
    data: dict[str, Any]
    model: dict[str, Any]
    trainer: TrainerSettings
    pre_train: PreTrainSettings | None
    alter_train_with_reg: PolicyTrainSettings | None
    sample: SampleSettings
    post_train: PostTrainSettings | None
    raw: dict[str, Any]


def check_common(cfg: Mapping[str, Any], sections: Any, *, required: Sequence[str],
                 path: str | None) -> tuple[dict[str, Any], list[str], Any]:
    """What every trainer-driven config checks first: top-level keys, the task list, the seed,
    ``data`` / ``model`` as dicts → ``(plain config, tasks, seed)``."""
    from automtl.errors import ConfigError

    raw: dict[str, Any] = plain(cfg)
    check_top_level(raw, sections, path=path, required=required)
    tasks = unique_tasks(raw["tasks"], path=path)
    seed = raw.get("seed", 0)
    try:
        check_seed(seed)
    except ConfigError as exc:
        exc.path = path
        raise
    for key in ("data", "model"):
        if key in raw and not isinstance(raw[key], Mapping):
            raise ConfigError(f"must be a dict, got {type(raw[key]).__name__}", key=key, path=path,
                              value=raw[key])
    return raw, tasks, seed


def check_config(cfg: Mapping[str, Any], *, path: str | None = None) -> AutoMTLPlan:
    """Validate every section of an AutoMTL config (:class:`ConfigError` naming the dotted key)."""

    raw, tasks, seed = check_common(cfg, SECTIONS, required=("tasks", "model"), path=path)

    def section(name: str, schema: Any) -> Any:
        return validate(schema, raw[name], key=name, path=path) if name in raw else None

    return AutoMTLPlan(
        tasks=tasks, seed=seed, data=dict(raw.get("data") or {}), model=dict(raw["model"]),
        trainer=validate(TrainerSettings, raw.get("trainer"), key="trainer", path=path),
        pre_train=section("pre_train", PreTrainSettings),
        alter_train_with_reg=section("alter_train_with_reg", PolicyTrainSettings),
        sample=validate(SampleSettings, raw.get("sample"), key="sample", path=path),
        post_train=section("post_train", PostTrainSettings), raw=raw)


def run_config(cfg: Mapping[str, Any] | str | os.PathLike[str], *, work_dir: str | os.PathLike[str],
               seed: int | None = None, resume: bool = False, device: str | None = None,
               cfg_options: Any = None, allow_changed: Sequence[str] = ()) -> dict[str, Any]:
    """Run every phase the config names and return ``{"results", "params", "policy", ...}``.

    Writes into ``work_dir``: ``config.py`` (resolved), phase weights, checkpoints, the sampled
    ``policy.json`` + ``policy.png``, ``train.log``, tensorboard events and ``results.json``.
    The run holds the work dir's lock throughout (:class:`WorkDirBusyError` while another run
    holds it). With ``resume=True`` finished phases are skipped and an interrupted one
    continues, provided the run-defining settings match the checkpoint's (:func:`fingerprint`;
    ``allow_changed`` names more keys that may differ).
    """
    if isinstance(cfg, (str, os.PathLike)):
        path: str | None = str(cfg)
        raw: Mapping[str, Any] = load_config(cfg, cfg_options)
    else:
        path, raw = None, cfg
    plan = check_config(raw, path=path)
    if seed is not None:
        plan.seed = seed
    with lock_main_work_dir(work_dir, purpose="train"):
        return run_plan(plan, Path(work_dir), resume=resume, device=device,
                        fingerprint=fingerprint(plan, allow_changed))


def fingerprint(plan: AutoMTLPlan, allow_changed: Sequence[str] = ()) -> Fingerprint:
    """The run-defining settings of ``plan``: every section with its defaults filled, less
    :data:`~automtl.train.fingerprint.AUTOMTL_MAY_CHANGE` and ``allow_changed``; a phase's
    checkpoint leaves out the sections of the phases after it."""
    sections = {"tasks": plan.tasks, "seed": plan.seed, "data": plan.data, "model": plan.model,
                "custom_imports": plan.raw.get("custom_imports"), "trainer": plan.trainer,
                **{name: getattr(plan, name) for name in STAGES}}
    return Fingerprint.of(sections, may_change=(*AUTOMTL_MAY_CHANGE, *allow_changed), stages=STAGES)


def run_plan(plan: AutoMTLPlan, work: Path, *, resume: bool = False, device: str | None = None,
             fingerprint: Fingerprint | None = None) -> dict[str, Any]:
    """Build data, model and trainer of a checked config and run its phases (see :func:`run_config`)."""
    from automtl.io import atomic_write_text
    from automtl.supernet.registration import build_model

    # an MTLModel unless the config names another
    model, trainer, val, metrics = start_run(plan, work, lambda: build_model(plan.model, plan.tasks),
                                             device=device, fingerprint=fingerprint)
    out: dict[str, Any] = {"tasks": plan.tasks, "seed": plan.seed}
    try:
        out.update(run_phases(plan, trainer, model, val, metrics, work, resume=resume))
    finally:
        trainer.close()
    if trainer.dist.is_main:
        atomic_write_text(work / "results.json", json.dumps(out, indent=2, default=str))
    return out


def start_run(plan: Any, work: Path, build_model: Callable[[], Any], *, device: str | None,
              fingerprint: Fingerprint | None) -> tuple[Any, Any, Any, Any]:
    """What every trainer-driven config run does first: write the resolved config, seed, build the
    data, the model (``build_model()``, after seeding) and its Trainer → ``(model, trainer, val
    loaders, metrics)``. ``plan`` is a checked config (``raw``, ``seed``, ``tasks``, ``data``,
    ``model``, ``trainer``)."""
    from automtl.data import build_data
    from automtl.metrics import default_metrics
    from automtl.train.checkpoint import seed_everything
    from automtl.train.losses import default_criteria
    from automtl.train.trainer import Trainer

    if env_rank() == 0:
        dump_config({**plan.raw, "seed": plan.seed}, work / "config.py")
    seed_everything(plan.seed)
    train, val = build_data(plan.data, plan.tasks, seed=plan.seed)
    model = build_model()
    metrics = default_metrics(plan.tasks, num_classes=plan.model.get("num_classes"))
    trainer = Trainer(model, train, val, default_criteria(plan.tasks), metrics, work_dir=work,
                      seed=plan.seed, device=device, fingerprint=fingerprint, **plan.trainer.kwargs())
    return model, trainer, val, metrics


def run_phases(plan: AutoMTLPlan, trainer: Any, model: Any, val: Any, metrics: Any, work: Path, *,
               resume: bool) -> dict[str, Any]:
    """Pre-train, policy-train, choose the policy, post-train and evaluate: ``{"results", "params", "policy"}``."""
    if plan.pre_train is not None:
        trainer.pre_train(**plan.pre_train.kwargs(), resume=resume)
    if plan.alter_train_with_reg is not None:
        trainer.alter_train_with_reg(**plan.alter_train_with_reg.kwargs(), resume=resume)
    policy = choose(plan, trainer, model, val, metrics, work)
    if plan.post_train is not None:
        trainer.post_train(**plan.post_train.kwargs(), reload=policy, resume=resume)
        results = trainer.validate("fixed")
    else:
        results = trainer.validate("fixed", policy=policy)
    return {"results": results, "params": model.count_params(policy), "policy": str(work / "policy.json")}


def choose(plan: AutoMTLPlan, trainer: Any, model: Any, val: Any, metrics: Any, work: Path) -> Any:
    """The policy of the post-train phase: a given file, all-share/specialize without policy
    training, else sampled per the ``sample`` section (deterministic from the weights)."""
    from automtl.supernet import Policy
    from automtl.train.policy_sampling import choose_policy, write_choice

    s = plan.sample
    if s.policy:
        return Policy.load(s.policy, model=model)
    if plan.alter_train_with_reg is None:
        return Policy.all(model, s.all)
    report = choose_policy(model, s.n, seed=s.seed, budget=s.budget, max_params=s.max_params,
                           val_loaders=val if s.score else None,
                           metrics=metrics if s.score else None, baseline=s.baseline,
                           device=trainer.device, temperature=s.temperature,
                           max_batches=s.max_batches, include_argmax=s.include_argmax)
    if trainer.dist.is_main:
        write_choice(report, work)
        trainer.monitor.log(f"sampled policy: {report.chosen.params} params of "
                            f"{report.reference_params} (limit {report.max_params}), scored by "
                            f"{report.scored_by}; {len(report.candidates)} candidates within budget")
    return report.chosen.policy
