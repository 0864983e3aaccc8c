"""The one atomic writer: complete files or none, no temp file outlives a failure, stale temps
of dead processes are cleaned, checkpoints load safely."""
import os
import subprocess
import sys

import pytest
import torch

from automtl.errors import CheckpointError
from automtl.io import atomic_save, atomic_write, atomic_write_text, clean_stale_temps, pid_alive, safe_load, temp_name


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / "ckpt" / f".latest.pt.tmp{dead}"
    stale.parent.mkdir()
    stale.write_bytes(b"partial")
    live = tmp_path / f".other.json.tmp{os.getppid()}"
    live.write_text("{}")
    unrelated = tmp_path / ".hidden.tmpfile"
    unrelated.write_text("x")
    assert clean_stale_temps(tmp_path) == [stale]
    assert live.exists() and unrelated.exists() and not stale.exists()
    assert temp_name(tmp_path / "x.pt").name == f".x.pt.tmp{os.getpid()}"


def test_pid_alive():
    assert pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


def test_safe_load_round_trip_and_errors(tmp_path):
    path = atomic_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    assert torch.equal(safe_load(path)["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        safe_load(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        safe_load(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        safe_load(tmp_path / "list.pt")
