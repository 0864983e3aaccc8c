"""One run per work dir: a live holder is named, a dead one's lock is taken over."""
import os
import socket
import subprocess
import sys

import pytest

from automtl.errors import WorkDirBusyError
from automtl.workdir import LOCK_NAME, lock_work_dir, read_holder


def test_lock_names_the_holder_and_is_released(tmp_path):
    with lock_work_dir(tmp_path, purpose="train") as lock:
        host, pid, purpose = read_holder(tmp_path)
        assert (host, pid, purpose) == (socket.gethostname(), os.getpid(), "train")
        assert lock.held
    assert read_holder(tmp_path) is None


def test_second_run_is_refused_while_the_first_lives(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{socket.gethostname()}:{holder.pid} search\n")
        with pytest.raises(WorkDirBusyError, match=rf":{holder.pid} \(search\).*remove"):
            lock_work_dir(tmp_path, purpose="train")
    finally:
        holder.kill()
        holder.wait()
    lock = lock_work_dir(tmp_path, purpose="train")  # its process is gone: the lock is stale
    assert read_holder(tmp_path)[1] == os.getpid()
    lock.release()


def test_lock_of_another_host_is_never_guessed_dead(tmp_path):
    (tmp_path / LOCK_NAME).write_text("elsewhere.example:1 train\n")
    with pytest.raises(WorkDirBusyError, match="elsewhere.example:1"):
        lock_work_dir(tmp_path, purpose="train")


def test_taking_the_lock_cleans_temps_of_killed_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".latest.pt.tmp{dead}"
    stale.write_bytes(b"partial")
    with lock_work_dir(tmp_path, purpose="train"):
        assert not stale.exists()
