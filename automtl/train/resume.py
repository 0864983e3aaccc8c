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
     "schedulers", "streams": {split: {task: …}}, "extras", "values", "history", "rng", "world",
     "fingerprint", "curves"}

``fingerprint`` (version 2) holds the run-defining settings of the run
(:class:`~automtl.train.fingerprint.Fingerprint`): a state with a fingerprint refuses a
checkpoint whose settings differ, naming the keys. ``curves`` holds the logged curves of the
run (a :class:`Stateful` such as :class:`~automtl.train.monitor.RunCurves`), so a resumed run
continues them without losing or repeating points. Version-1 checkpoints have neither and are
read without those checks.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import torch

from automtl.errors import CheckpointError
from automtl.io import atomic_save, check_state_dict, safe_load
from automtl.train.checkpoint import lists_to_tuples, rng_state, set_rng_state, tuples_to_lists
from automtl.train.distributed import barrier
from automtl.train.fingerprint import Fingerprint

__all__ = ["FORMAT", "VERSION", "Checkpointer", "ModelState", "RandomState", "Stateful", "TrainingState",
           "capture_state", "check_model_state", "load_model_state", "load_state", "restore_state",
           "save_state"]

FORMAT = "automtl.training_state"
VERSION = 2
#: what every checkpoint holds, with the type each entry must have
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model": Mapping, "step": int, "complete": bool, "optimizers": Mapping, "schedulers": Mapping,
    "streams": Mapping, "extras": Mapping, "values": Mapping, "history": list, "rng": Mapping}


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
    fingerprint: Fingerprint | None = None
    curves: Stateful | None = None
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
        "fingerprint": dict(state.fingerprint.values) if state.fingerprint is not None else None,
        "curves": state.curves.state_dict() if state.curves is not None else None,
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
    """Check that ``ckpt`` (a :func:`capture_state` dict) fits ``state``, then load it in place
    (a part that still refuses to load raises :class:`CheckpointError` naming it)."""
    _check_state(state, ckpt, where)
    try:
        _load_parts(state, ckpt)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{where}: cannot be restored: {type(exc).__name__}: {exc}") from exc
    state.step, state.complete = int(ckpt["step"]), bool(ckpt["complete"])
    state.values.update({k: float(v) for k, v in ckpt["values"].items()})
    state.history[:] = [float(v) for v in ckpt["history"]]
    if state.curves is not None and ckpt.get("curves") is not None:
        state.curves.load_state_dict(ckpt["curves"])


def _load_parts(state: TrainingState, ckpt: Mapping[str, Any]) -> None:
    """Load the model, optimisers, schedulers, streams, extras and RNGs of ``ckpt``."""
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


def check_model_state(model: Stateful, saved: Any, where: Any) -> None:
    """:class:`CheckpointError` when ``saved`` is not a state dict, naming missing and unexpected
    keys, every shape that differs from ``model.state_dict()`` and every tensor saved as another
    kind of value (:func:`automtl.io.check_state_dict`)."""
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{where}: the weights are a {type(saved).__name__}, not a state dict "
                              "(a mapping of parameter names to tensors)")
    adopt = getattr(model, "adopt_state_layout", None)
    if callable(adopt):  # a layout that follows the saved weights (sparse weight deltas) comes first
        adopt(saved)
    check_state_dict(model.state_dict(), saved, where)


def load_model_state(model: Stateful, saved: Any, where: Any) -> None:
    """Load ``saved`` into ``model`` after :func:`check_model_state`."""
    check_model_state(model, saved, where)
    model.load_state_dict(saved)


def _check_state(state: TrainingState, ckpt: Mapping[str, Any], where: Any) -> None:
    """Everything :func:`restore_state` needs of ``ckpt``, checked before anything changes."""
    _check_identity(state, ckpt, where)
    _check_layout(ckpt, where)
    check_model_state(state.model, ckpt["model"], where)
    _check_parts(state, ckpt, where)
    for k, opt in state.optimizers.items():
        _check_optimizer(k, opt, ckpt["optimizers"][k], where, _param_names(state.model))


def _check_identity(state: TrainingState, ckpt: Mapping[str, Any], where: Any) -> None:
    """Format, layout version, run, settings (fingerprint) and length of the checkpointed run."""
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a training-state checkpoint of this automtl (format "
                              f"{ckpt.get('format')!r}, expected {FORMAT!r}); remove it to start over")
    if int(ckpt.get("version", -1)) > VERSION:
        raise CheckpointError(f"{where}: written by a newer automtl (layout version {ckpt.get('version')}, "
                              f"this one reads up to {VERSION})")
    if ckpt.get("run") != state.run:
        _refuse_run(state, ckpt, where)
    if state.fingerprint is not None and ckpt.get("fingerprint") is not None:
        state.fingerprint.check(ckpt["fingerprint"], where)
    if int(ckpt.get("steps", -1)) != state.steps:
        _refuse_run(state, ckpt, where)


def _refuse_run(state: TrainingState, ckpt: Mapping[str, Any], where: Any) -> NoReturn:
    raise CheckpointError(f"{where}: checkpoint of '{ckpt.get('run')}', a {ckpt.get('steps')}-step run; "
                          f"this is '{state.run}', a {state.steps}-step run: remove the checkpoint "
                          "or keep the run and its step count")


def _check_layout(ckpt: Mapping[str, Any], where: Any) -> None:
    """Every entry of :data:`REQUIRED` is there with its type."""
    for key, kind in REQUIRED.items():
        if key not in ckpt:
            raise CheckpointError(f"{where}: has no '{key}' entry (a damaged or foreign checkpoint)")
        value = ckpt[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = getattr(kind, "__name__", str(kind)).replace("Mapping", "dict")
            raise CheckpointError(f"{where}: its '{key}' is of type {type(value).__name__}, expected {expected}")


def _check_parts(state: TrainingState, ckpt: Mapping[str, Any], where: Any) -> None:
    """Optimisers, schedulers, extras and data positions: present, and module extras fit."""
    parts: dict[str, Mapping[str, Any]] = {"optimizers": state.optimizers, "schedulers": state.schedulers,
                                           "extras": state.extras}
    for group, ours in parts.items():
        lacking = sorted(set(ours) - set(ckpt[group]))
        if lacking:
            raise CheckpointError(f"{where}: holds no state for {group} {lacking}")
    for k, extra in state.extras.items():
        if isinstance(extra, torch.nn.Module):
            check_model_state(extra, ckpt["extras"][k], f"{where} (extras '{k}')")
    saved_streams: Mapping[str, Any] = ckpt["streams"]
    for split, d in state.streams.items():
        lacking = sorted(set(d) - set(saved_streams.get(split, {})))
        if lacking:
            raise CheckpointError(f"{where}: holds no data position for task(s) {lacking} "
                                  f"(stream '{split}')")


def _param_names(model: Any) -> dict[int, str]:
    """``{id(parameter): name}`` of a module (empty for other models)."""
    if not isinstance(model, torch.nn.Module):
        return {}
    return {id(p): n for n, p in model.named_parameters()}


def _check_optimizer(name: str, opt: torch.optim.Optimizer, saved: Any, where: Any,
                     names: Mapping[int, str]) -> None:
    """Same parameter groups, and per-parameter state tensors shaped like their parameters."""
    if not isinstance(saved, Mapping) or not isinstance(saved.get("param_groups"), list):
        raise CheckpointError(f"{where}: optimizer '{name}' state is not an optimizer state dict")
    ours = [len(g["params"]) for g in opt.param_groups]
    theirs = [len(g["params"]) for g in saved["param_groups"]]
    if ours != theirs:
        raise CheckpointError(f"{where}: optimizer '{name}' has parameter groups of sizes {ours} "
                              f"but the checkpoint's has {theirs}")
    params = [p for g in opt.param_groups for p in g["params"]]
    ids = [i for g in saved["param_groups"] for i in g["params"]]
    wrong = []
    for index, p in zip(ids, params):
        for key, value in (saved.get("state") or {}).get(index, {}).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                wrong.append(f"'{key}' of '{names.get(id(p), index)}' is {tuple(value.shape)} "
                             f"but the parameter is {tuple(p.shape)}")
    if wrong:
        raise CheckpointError(f"{where}: optimizer '{name}' state does not fit: " + "; ".join(wrong[:8])
                              + (" …" if len(wrong) > 8 else ""))


