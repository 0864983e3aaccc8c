"""The phase loop of the trainer: resume, iterate, log, validate and checkpoint on a cadence,
then write the phase's weights.

A phase is a :class:`PhaseState` (a :class:`~automtl.train.resume.TrainingState` that also
carries the Gumbel temperature τ) and a step function ``step(it) -> {name: value}``; the loop
knows nothing of what a step does, so pre-, policy- and post-training share it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from automtl.train.monitor import RunMonitor
from automtl.train.resume import Checkpointer, TrainingState

__all__ = ["PHASES", "Cadence", "PhaseHost", "PhaseLoop", "PhaseState", "phase_offset"]

PHASES = ("pre_train", "alter_train_with_reg", "post_train", "delta_train", "delta_support_train", "delta_act_train")

StepFn = Callable[[int], "dict[str, float]"]


class PhaseState(TrainingState):
    """The resumable state of one phase; τ lives in ``values`` so checkpoints carry it."""

    @property
    def tau(self) -> float:
        """The Gumbel-softmax temperature of the phase."""
        return self.values["tau"]

    @tau.setter
    def tau(self, value: float) -> None:
        self.values["tau"] = float(value)


@dataclass(frozen=True)
class Cadence:
    """How often a phase logs, validates and checkpoints (in iterations; 0: never, except the
    checkpoint written at the end)."""

    print_iters: int = 50
    val_iters: int = 0
    checkpoint_iters: int = 100


class PhaseHost(Protocol):
    """What the loop needs of the trainer it runs for: τ, weights files and validation."""

    tau: float

    def save_weights(self, path: str | os.PathLike[str]) -> Path: ...

    def load_weights(self, path: str | os.PathLike[str]) -> None: ...

    def validate(self, stage: str = "mtl", hard: bool = True, *,
                 iteration: int | None = None) -> dict[str, Any]: ...


def phase_offset(name: str) -> int:
    """Where a phase's iterations start on the shared tensorboard axis (phases never overlap)."""
    return PHASES.index(name) * 1_000_000 if name in PHASES else 0


class PhaseLoop:
    """Runs phases for one trainer: the same monitor, cadence and process layout every time."""

    def __init__(self, host: PhaseHost, monitor: RunMonitor, cadence: Cadence, *, tasks: Sequence[str],
                 world: int = 1, is_main: bool = True, progress: bool = True) -> None:
        self.host = host
        self.monitor = monitor
        self.cadence = cadence
        self.tasks = list(tasks)
        self.world = world
        self.is_main = is_main
        self.progress = progress

    def run(self, state: PhaseState, step: StepFn, *, final: Path, checkpoint: Checkpointer, resume: bool,
            eval_stage: str | None, lr: float) -> Path:
        """Run ``state`` to its last iteration (from ``checkpoint`` when ``resume``), write the
        weights to ``final`` and return it; a finished phase only loads ``final``.

        ``eval_stage``: the stage validated every ``val_iters`` iterations (``None``: never).
        """
        self.host.tau = state.tau
        if resume and checkpoint.exists():
            checkpoint.restore(state)  # its curves too: history.json goes on from the checkpoint
            self.host.tau = state.tau
            self.monitor.log(f"{state.run}: resumed from {checkpoint.path} at iteration {state.step}/{state.steps}")
        elif state.curves is not None:
            state.curves.load_state_dict({})  # a fresh start drops the points of an earlier attempt
        if state.complete and final.is_file():
            self.host.load_weights(final)
            self.monitor.flush()
            return final
        self.monitor.log(f"{state.run}: iterations {state.step}->{state.steps}, lr {lr}, tasks {self.tasks}, "
                         f"world {self.world}")
        state.model.train()
        self._iterate(state, step, checkpoint, eval_stage)
        state.complete = True
        if self.is_main:
            self.host.save_weights(final)
        self._checkpoint(state, checkpoint)
        self.monitor.log(f"{state.run}: done, weights in {final}")
        return final

    def _iterate(self, state: PhaseState, step: StepFn, checkpoint: Checkpointer, eval_stage: str | None) -> None:
        c = self.cadence
        bar = tqdm(total=state.steps, initial=state.step, desc=state.run, dynamic_ncols=True,
                   disable=not (self.progress and self.is_main), leave=False)
        t0 = time.time()
        try:
            for it in range(state.step, state.steps):
                logs = step(it)
                state.step = it + 1
                for sched in state.schedulers.values():
                    sched.step()
                gstep = phase_offset(state.run) + state.step
                for k, v in logs.items():
                    self.monitor.scalar(f"{state.run}/{k}", v, gstep)
                bar.update(1)
                if c.print_iters and (state.step % c.print_iters == 0 or state.step == state.steps):
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                    self.monitor.log(f"{state.run} iter {state.step}/{state.steps} "
                                     + " ".join(f"{k}={v:.4g}" for k, v in logs.items())
                                     + f" ({time.time() - t0:.1f}s)")
                if c.val_iters and eval_stage is not None and state.step % c.val_iters == 0:
                    self._log_validation(state, eval_stage, gstep)
                if c.checkpoint_iters and state.step % c.checkpoint_iters == 0 and state.step < state.steps:
                    self._checkpoint(state, checkpoint)
        finally:
            bar.close()
            self.monitor.flush()

    def _checkpoint(self, state: PhaseState, checkpoint: Checkpointer) -> None:
        """Write the checkpoint, then ``history.json`` with the same points (a kill between the two
        loses nothing: a resume takes the curves from the checkpoint)."""
        checkpoint.save(state)
        self.monitor.flush()

    def _log_validation(self, state: PhaseState, stage: str, gstep: int) -> None:
        res = self.host.validate(stage, hard=True, iteration=state.step)
        for task in self.tasks:
            for name, value in res[task].items():
                self.monitor.scalar(f"{state.run}/val/{task}/{name}", value, gstep)
        for name, value in res.get("delta_m", {}).items():
            self.monitor.scalar(f"{state.run}/val/{name}", value, gstep)
        self.monitor.log(f"{state.run} val iter {state.step}: {res}")
