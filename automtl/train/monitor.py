"""What a run reports: a plain-text log, tensorboard scalars and a JSON history for plots."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from automtl.io import atomic_write_text


class RunCurves:
    """The curves one run (a phase) logged to a monitor, tags ``<run>/…``: a checkpoint part, so
    a resumed run goes on from the points of its checkpoint (none lost, none repeated)."""

    def __init__(self, monitor: RunMonitor, run: str) -> None:
        self.monitor = monitor
        self.prefix = f"{run}/"

    def state_dict(self) -> dict[str, list[list[float]]]:
        """The run's points, ``{tag: [[step, value], …]}``."""
        return {t: [list(p) for p in s] for t, s in self.monitor.history.items() if t.startswith(self.prefix)}

    def load_state_dict(self, state: dict[str, list[list[float]]]) -> None:
        """Replace the run's points by ``state`` (``{}``: the run starts a fresh curve)."""
        history = self.monitor.history
        for tag in [t for t in history if t.startswith(self.prefix)]:
            del history[tag]
        history.update({t: [[int(step), float(v)] for step, v in s] for t, s in state.items()})


class RunMonitor:
    """Writes ``train.log``, tensorboard events under ``tb/`` and ``history.json`` in ``work_dir``.

    Only the main process writes; the others get a silent monitor (``enabled=False``).
    """

    def __init__(self, work_dir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True,
                 writer_path: str | os.PathLike | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.enabled = enabled
        self.history: dict[str, list[list[float]]] = {}
        self._writer: Any = None
        self._tb_dir = Path(writer_path) if writer_path else self.work_dir / "tb"
        self._tb = tensorboard
        self.logger = logging.getLogger(f"automtl.train.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        if enabled:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            hist = self.work_dir / "history.json"
            if hist.is_file():  # a resumed run keeps its earlier curve
                try:
                    self.history = json.loads(hist.read_text())
                except ValueError:
                    self.history = {}
            handler = logging.FileHandler(self.work_dir / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            self.logger.addHandler(handler)

    def log(self, message: str) -> None:
        """One line in ``train.log``."""
        if self.enabled:
            self.logger.info(message)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One tensorboard scalar, also kept in the history (for curve plots)."""
        if not self.enabled:
            return
        series = self.history.setdefault(tag, [])
        while series and series[-1][0] >= step:  # a resumed run rewrites what came after its checkpoint
            series.pop()
        series.append([step, float(value)])
        if self._tb:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self._tb_dir))
            self._writer.add_scalar(tag, float(value), step)

    def curves(self, run: str) -> RunCurves:
        """The curves of ``run`` as a checkpoint part (see :class:`RunCurves`)."""
        return RunCurves(self, run)

    def flush(self) -> None:
        """Write the history file and flush tensorboard."""
        if not self.enabled:
            return
        atomic_write_text(self.work_dir / "history.json", json.dumps(self.history))
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and release files."""
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)

    def write_config(self, config: dict[str, Any], name: str = "trainer_config.json") -> None:
        """The resolved settings of a run, next to its outputs."""
        if self.enabled:
            atomic_write_text(self.work_dir / name, json.dumps(config, indent=2, default=str, sort_keys=True))
