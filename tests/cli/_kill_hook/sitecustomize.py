"""Test hook of the kill tests: Python runs it at start-up when this folder is on PYTHONPATH.

``AUTOMTL_TEST_HOOK`` (JSON) picks one moment of the run to stop at:

* ``{"file": GLOB, "nth": N, "when": W}``: the N-th :func:`automtl.io.atomic_write` of a file
  whose name fits GLOB. ``W`` is ``before`` / ``after`` (SIGKILL just before the write / just
  after the file was replaced), ``during`` (SIGKILL with half of the bytes in the temporary
  file) or ``pause`` (half the bytes written, then create ``<dir>/paused`` and wait up to 60 s
  for ``<dir>/go``; ``dir`` is a key of the JSON).
* ``{"step": N}``: SIGKILL at the N-th optimiser step (``torch.optim.Adam.step``).
"""
from __future__ import annotations

import io
import json
import os
import signal
import time
from fnmatch import fnmatchcase
from pathlib import Path

SPEC = json.loads(os.environ.get("AUTOMTL_TEST_HOOK") or "null")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(folder: str) -> None:
    (Path(folder) / "paused").write_text(str(os.getpid()))
    deadline = time.time() + 60
    while not (Path(folder) / "go").exists() and time.time() < deadline:
        time.sleep(0.05)


def _halfway(write, when: str, folder: str | None):
    """A write callback that writes half of what ``write`` writes, then dies or pauses."""

    def partial(f):
        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        if when == "during":
            _die()
        _pause(folder or ".")
        f.write(data[len(data) // 2:])

    return partial


def _hook_writes(spec: dict) -> None:
    import automtl.io as aio

    original = aio.atomic_write
    seen = [0]

    def atomic_write(path, write):
        if not fnmatchcase(Path(path).name, spec["file"]):
            return original(path, write)
        seen[0] += 1
        when = spec["when"] if seen[0] == spec.get("nth", 1) else None
        if when == "before":
            _die()
        if when in ("during", "pause"):
            write = _halfway(write, when, spec.get("dir"))
        out = original(path, write)
        if when == "after":
            _die()
        return out

    aio.atomic_write = atomic_write


def _hook_steps(n: int) -> None:
    import torch

    original = torch.optim.Adam.step
    seen = [0]

    def step(self, *args, **kwargs):
        seen[0] += 1
        if seen[0] == n:
            _die()
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = step


if isinstance(SPEC, dict) and "file" in SPEC:
    _hook_writes(SPEC)
elif isinstance(SPEC, dict) and "step" in SPEC:
    _hook_steps(int(SPEC["step"]))
