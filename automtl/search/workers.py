"""Helper worker processes of a parallel search on one machine.

``python -m automtl search CONFIG --workers N`` runs the search in its own process and in
N−1 helpers started here with :mod:`multiprocessing` (``spawn``: a fresh interpreter that
imports the same automtl as the parent, whatever its ``sys.path``). Each helper loads the same
config with the same overrides, opens the same study (``resume``) and evaluates trials until
the study holds its target; the study's storage is how they share work, so it must be one
that other processes can open (SQLite, an RDB URL or a journal file).

Helpers never outlive the search: on Linux each asks the kernel for SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``), and the parent terminates the helpers still running when
the search fails or is interrupted (:class:`Workers` as a context manager). A trial a killed
helper leaves RUNNING is re-evaluated (:func:`automtl.search.study.fail_orphans`).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automtl.errors import AutoMTLError, SearchError
from automtl.search.settings import SEED_LIMIT

__all__ = ["WorkerSpec", "Workers", "die_with_parent", "shareable_storage", "work"]

PR_SET_PDEATHSIG = 1
#: seeds of helper ``i`` are ``seed + SEED_STRIDE * i`` (distinct proposal streams)
SEED_STRIDE = 1000


@dataclass(frozen=True)
class WorkerSpec:
    """What one helper needs to join a search: the config and the study to work on."""

    config: str
    cfg_options: Mapping[str, Any]
    study: str
    storage: str
    work_dir: str
    seed: int | None
    parent_pid: int


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux
    ``PR_SET_PDEATHSIG``; elsewhere the parent's cleanup alone); exit at once when the parent
    ``parent_pid`` is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def work(spec: WorkerSpec) -> None:
    """The body of one helper: build the search from the config and run it without outputs
    (the parent writes them); exit status 1 with a one-line message on a typed error."""
    die_with_parent(spec.parent_pid)
    import optuna

    from automtl.config import load_config
    from automtl.search.config import build_job

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        cfg = load_config(spec.config, spec.cfg_options)
        job = build_job(cfg, config_path=spec.config, storage=spec.storage, study=spec.study,
                        resume=True, seed=spec.seed, work_dir=spec.work_dir, progress=False,
                        tensorboard=False)
        try:
            job.search.run(write=False)
        finally:
            job.search.close()
    except AutoMTLError as exc:
        print(f"error: search worker {os.getpid()}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        sys.exit(1)


def _helper_seed(seed: int | None, i: int) -> int | None:
    """The seed of helper ``i``: ``seed + SEED_STRIDE * i``, kept below ``SEED_LIMIT``."""
    return None if seed is None else (seed + SEED_STRIDE * i) % SEED_LIMIT


def shareable_storage(url: str | None) -> str:
    """``url`` when other processes can open it, else :class:`SearchError` (helpers need it)."""
    if url is None or url in ("memory", ":memory:"):
        raise SearchError("--workers > 1 needs a storage other processes can open "
                          "(the default SQLite file, an RDB URL or a journal file)")
    return url


class Workers:
    """Helper processes of one search. As a context manager it terminates those still
    running when the block raises (the parent's search failed or was interrupted)."""

    def __init__(self, specs: Sequence[WorkerSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.processes = [ctx.Process(target=work, args=(spec,), name=f"search-worker-{i + 1}")
                          for i, spec in enumerate(specs)]

    @classmethod
    def for_search(cls, n: int, *, config: str, cfg_options: Mapping[str, Any], study: str,
                   storage: str | None, work_dir: str, seed: int | None) -> Workers:
        """``n`` helpers (not started yet) of the search of ``config`` on ``study`` in
        ``storage``; helper ``i`` seeds its proposals with ``seed + SEED_STRIDE * i``."""
        url = shareable_storage(storage) if n > 0 else str(storage)
        parent = os.getpid()
        return cls([WorkerSpec(str(config), dict(cfg_options), study, url, str(work_dir),
                               _helper_seed(seed, i), parent)
                    for i in range(1, n + 1)])

    def _started(self) -> list[multiprocessing.process.BaseProcess]:
        return [p for p in self.processes if p.pid is not None]

    def start(self) -> Workers:
        """Start every helper (none is left running when one fails to start)."""
        try:
            for p in self.processes:
                p.start()
        except BaseException:
            self.terminate()
            raise
        return self

    def wait(self) -> list[int]:
        """Wait for every helper; their exit codes (0: finished)."""
        for p in self._started():
            p.join()
        return [-1 if p.exitcode is None else p.exitcode for p in self.processes]

    def terminate(self, timeout_s: float = 10.0) -> None:
        """Stop the helpers still running (SIGTERM, then SIGKILL after ``timeout_s``)."""
        started = self._started()
        for p in started:
            if p.is_alive():
                p.terminate()
        for p in started:
            p.join(timeout_s)
            if p.is_alive():
                p.kill()
                p.join()

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.terminate()
