"""One run per work directory: an exclusive lock file naming its holder.

``lock_work_dir(path, purpose="train")`` creates ``<path>/.lock`` atomically (``O_EXCL``)
holding ``host:pid purpose``. A second run in the same folder gets a
:class:`~automtl.errors.WorkDirBusyError` naming the holder; a lock left by a process that no
longer runs on this host (a kill -9) is stale and taken over. Locks of another host are never
guessed dead: remove the file by hand once that run is gone. The lock also cleans the temporary
files that killed writers left in the folder (:func:`automtl.io.clean_stale_temps`).

Example::

    with lock_work_dir("work_dirs/tiny", purpose="train"):
        ...  # train, write checkpoints
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from types import TracebackType

from automtl.errors import WorkDirBusyError
from automtl.io import clean_stale_temps, pid_alive

__all__ = ["LOCK_NAME", "WorkDirLock", "lock_work_dir", "read_holder"]

LOCK_NAME = ".lock"


def _me(purpose: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()} {purpose}"


def read_holder(path: str | os.PathLike[str]) -> tuple[str, int, str] | None:
    """``(host, pid, purpose)`` of the lock in folder ``path``, or None when there is none
    (an unreadable lock file reads as held by an unknown process: pid -1)."""
    lock = Path(path) / LOCK_NAME
    try:
        text = lock.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError:
        return ("?", -1, "?")
    holder, _, purpose = text.partition(" ")
    host, _, pid = holder.rpartition(":")
    try:
        return host, int(pid), purpose
    except ValueError:
        return ("?", -1, "?")


class WorkDirLock:
    """The held lock of one work directory; :meth:`release` (or leaving the ``with``) frees it."""

    def __init__(self, path: Path, purpose: str) -> None:
        self.path = path
        self.purpose = purpose
        self.file = path / LOCK_NAME
        self.held = False

    def acquire(self) -> WorkDirLock:
        """Take the lock (taking over a stale one) or raise :class:`WorkDirBusyError`."""
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed by us, or by a racing run, then retried
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(self.path)
                if holder is None:
                    continue  # released between our open and our read
                host, pid, purpose = holder
                if host == socket.gethostname() and pid > 0 and not pid_alive(pid):
                    self.file.unlink(missing_ok=True)  # its process is gone: stale
                    continue
                raise WorkDirBusyError(
                    f"work dir {self.path} is in use by {host}:{pid} ({purpose}); wait for that "
                    f"run, or remove {self.file} if it is no longer running") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_me(self.purpose) + "\n")
            self.held = True
            clean_stale_temps(self.path)
            return self
        raise WorkDirBusyError(f"could not lock {self.path}: its lock keeps changing hands")

    def release(self) -> None:
        """Free the lock if this process still holds it."""
        if self.held:
            holder = read_holder(self.path)
            if holder is not None and holder[1] == os.getpid():
                self.file.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> WorkDirLock:
        return self if self.held else self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_work_dir(path: str | os.PathLike[str], *, purpose: str) -> WorkDirLock:
    """Lock folder ``path`` for this process (see the module docstring); use as a context
    manager or call :meth:`WorkDirLock.release` when done."""
    return WorkDirLock(Path(path), purpose).acquire()
