"""Checkpoint and restore of a training state: the one resume path of the Trainer phases and of
one-shot supernet training.

A :class:`TrainingState` says what a run is (``run``, ``steps``), how far it got (``step``,
``complete``, ``history``, ``values`` such as τ) and which stateful parts it trains with (the
model, optimisers, schedulers, data streams and extras such as a loss weighting or a sampler
RNG). :func:`save_state` writes all of it, plus the global RNGs, with
:func:`automtl.io.atomic_save`; :func:`load_state` reads it with :func:`automtl.io.safe_load`,
checks that every part fits *before* changing anything, and raises :class:`CheckpointError`
naming the keys and shapes that differ. Layout (``format``/``version`` mark it)::

    {"format", "version", "run", "steps", "step", "complete", "model", "optimizers",
     "schedulers", "streams": {split: {task: …}}, "extras", "values", "history", "rng", "world"}
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from automtl.errors import CheckpointError
from automtl.io import atomic_save, safe_load
from automtl.train.checkpoint import lists_to_tuples, rng_state, set_rng_state, tuples_to_lists
from automtl.train.distributed import barrier

__all__ = ["FORMAT", "VERSION", "Checkpointer", "ModelState", "RandomState", "Stateful", "TrainingState",
           "capture_state", "check_model_state", "load_model_state", "load_state", "restore_state",
           "save_state"]

FORMAT = "automtl.training_state"
VERSION = 1


class Stateful(Protocol):
    """Anything a checkpoint can hold: modules, optimisers, schedulers, streams, weightings."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


class ModelState(Stateful, Protocol):
    """The model of a run: its weights are a state and it switches to training mode."""

    def train(self, mode: bool = True) -> Any: ...


class RandomState:
    """A ``random.Random`` as a :class:`Stateful` part (e.g. the subnet sampler of a supernet)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def state_dict(self) -> list[Any]:
        """The generator state as nested lists (``weights_only`` loading refuses tuples)."""
        return tuples_to_lists(self.rng.getstate())

    def load_state_dict(self, state: list[Any]) -> None:
        """Put the generator back where :meth:`state_dict` found it."""
        self.rng.setstate(lists_to_tuples(state))


@dataclass
class TrainingState:
    """Everything a run needs to resume: identity, position and its stateful parts."""

    run: str
    steps: int
    model: ModelState
    step: int = 0
    complete: bool = False
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = field(default_factory=dict)
    streams: dict[str, Mapping[str, Stateful]] = field(default_factory=dict)
    extras: dict[str, Stateful] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    last_checkpoint: Path | None = None


def capture_state(state: TrainingState, *, world: int = 1) -> dict[str, Any]:
    """The checkpoint dict of ``state`` (plus the global RNGs): only tensors and plain values."""
    return {
        "format": FORMAT, "version": VERSION, "run": state.run, "steps": int(state.steps),
        "step": int(state.step), "complete": bool(state.complete),
        "model": state.model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in state.schedulers.items()},
        "streams": {split: {t: s.state_dict() for t, s in d.items()} for split, d in state.streams.items()},
        "extras": {k: e.state_dict() for k, e in state.extras.items()},
        "values": {k: float(v) for k, v in state.values.items()},
        "history": [float(v) for v in state.history],
        "rng": rng_state(), "world": int(world),
    }


def save_state(state: TrainingState, path: str | os.PathLike[str], *, world: int = 1) -> Path:
    """Write ``state`` to ``path`` atomically; it becomes ``state.last_checkpoint``."""
    path = atomic_save(capture_state(state, world=world), path)
    state.last_checkpoint = path
    return path


def load_state(state: TrainingState, path: str | os.PathLike[str], *, map_location: Any = "cpu") -> None:
    """Restore ``state`` (and the global RNGs) from the checkpoint at ``path``; nothing changes
    when the checkpoint does not fit."""
    path = Path(path)
    restore_state(state, safe_load(path, map_location=map_location), path)
    state.last_checkpoint = path


def restore_state(state: TrainingState, ckpt: Mapping[str, Any], where: Any = "checkpoint") -> None:
    """Check that ``ckpt`` (a :func:`capture_state` dict) fits ``state``, then load it in place."""
    _check_state(state, ckpt, where)
    state.model.load_state_dict(ckpt["model"])
    for k, o in state.optimizers.items():
        o.load_state_dict(ckpt["optimizers"][k])
    for k, sched in state.schedulers.items():
        sched.load_state_dict(ckpt["schedulers"][k])
    for split, d in state.streams.items():
        for t, stream in d.items():
            stream.load_state_dict(ckpt["streams"][split][t])
    for k, e in state.extras.items():
        e.load_state_dict(ckpt["extras"][k])
    set_rng_state(ckpt["rng"])
    state.step, state.complete = int(ckpt["step"]), bool(ckpt["complete"])
    state.values.update({k: float(v) for k, v in ckpt["values"].items()})
    state.history[:] = [float(v) for v in ckpt["history"]]


class Checkpointer:
    """The latest-checkpoint file of one run: the main process writes it, every process reads it."""

    def __init__(self, path: str | os.PathLike[str], *, map_location: Any = "cpu", is_main: bool = True,
                 world: int = 1) -> None:
        self.path = Path(path)
        self.map_location = map_location
        self.is_main = is_main
        self.world = world

    def exists(self) -> bool:
        """Whether there is a checkpoint to resume from."""
        return self.path.is_file()

    def save(self, state: TrainingState) -> Path:
        """Write ``state`` (main process), wait for every process, record it as the last good one."""
        if self.is_main:
            save_state(state, self.path, world=self.world)
        barrier(self.world)
        state.last_checkpoint = self.path
        return self.path

    def restore(self, state: TrainingState) -> None:
        """Load the checkpoint into ``state`` (see :func:`load_state`)."""
        load_state(state, self.path, map_location=self.map_location)


def check_model_state(model: Stateful, saved: Mapping[str, Any], where: Any) -> None:
    """:class:`CheckpointError` naming missing and unexpected keys and every shape that differs
    between ``saved`` and ``model.state_dict()``."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    shapes = [f"'{k}' is {tuple(saved[k].shape)} in the checkpoint but {tuple(v.shape)} in the model"
              for k, v in own.items()
              if isinstance(v, torch.Tensor) and isinstance(saved.get(k), torch.Tensor)
              and saved[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if shapes:
        problems.append("shapes differ: " + "; ".join(shapes[:8]) + (" …" if len(shapes) > 8 else ""))
    if problems:
        raise CheckpointError(f"{where}: does not fit the model; " + ", ".join(problems))


def load_model_state(model: Stateful, saved: Mapping[str, Any], where: Any) -> None:
    """Load ``saved`` into ``model`` after :func:`check_model_state`."""
    check_model_state(model, saved, where)
    model.load_state_dict(saved)


def _check_state(state: TrainingState, ckpt: Mapping[str, Any], where: Any) -> None:
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a training-state checkpoint of this automtl (format "
                              f"{ckpt.get('format')!r}, expected {FORMAT!r}); remove it to start over")
    if int(ckpt.get("version", -1)) > VERSION:
        raise CheckpointError(f"{where}: written by a newer automtl (layout version {ckpt.get('version')}, "
                              f"this one reads up to {VERSION})")
    if ckpt.get("run") != state.run or int(ckpt.get("steps", -1)) != state.steps:
        raise CheckpointError(f"{where}: checkpoint of '{ckpt.get('run')}', a {ckpt.get('steps')}-step run; "
                              f"this is '{state.run}', a {state.steps}-step run: remove the checkpoint "
                              "or keep the run and its step count")
    check_model_state(state.model, ckpt["model"], where)
    parts: dict[str, Mapping[str, Any]] = {"optimizers": state.optimizers, "schedulers": state.schedulers,
                                           "extras": state.extras}
    for group, ours in parts.items():
        lacking = sorted(set(ours) - set(ckpt.get(group, {})))
        if lacking:
            raise CheckpointError(f"{where}: holds no state for {group} {lacking}")
    saved_streams: Mapping[str, Any] = ckpt.get("streams", {})
    for split, d in state.streams.items():
        lacking = sorted(set(d) - set(saved_streams.get(split, {})))
        if lacking:
            raise CheckpointError(f"{where}: holds no data position for task(s) {lacking} "
                                  f"(stream '{split}')")
    for k, opt in state.optimizers.items():
        _check_optimizer(k, opt, ckpt["optimizers"][k], where)


def _check_optimizer(name: str, opt: torch.optim.Optimizer, saved: Mapping[str, Any], where: Any) -> None:
    ours = [len(g["params"]) for g in opt.param_groups]
    theirs = [len(g["params"]) for g in saved.get("param_groups", [])]
    if ours != theirs:
        raise CheckpointError(f"{where}: optimizer '{name}' has parameter groups of sizes {ours} "
                              f"but the checkpoint's has {theirs}")


def _few(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    return str(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
