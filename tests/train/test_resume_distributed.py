"""Killing a run and resuming it reaches the same weights; 2 processes match 1 process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

JOB = Path(__file__).with_name("_job.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))


def _run(*args, launcher=(sys.executable,)):
    return subprocess.run([*launcher, str(JOB), *map(str, args)], env=ENV, capture_output=True, text=True,
                          timeout=240)


def _same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0 or not a[k].is_floating_point():
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=atol, msg=k)


@pytest.mark.slow
def test_sigkill_then_resume_reaches_uninterrupted_weights(tmp_path):
    full = _run(tmp_path / "full", tmp_path / "full.pt")
    assert full.returncode == 0, full.stderr
    killed = _run(tmp_path / "cut", tmp_path / "cut.pt", "--kill-at", 17)  # alter iteration 9 of 12
    assert killed.returncode == -signal.SIGKILL
    ck = torch.load(tmp_path / "cut" / "checkpoints" / "alter_train_with_reg_latest.pt", weights_only=True)
    assert ck["step"] == 6 and not ck["complete"]
    resumed = _run(tmp_path / "cut", tmp_path / "cut.pt", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in (tmp_path / "cut" / "train.log").read_text()
    _same(torch.load(tmp_path / "full.pt"), torch.load(tmp_path / "cut.pt"))


@pytest.mark.slow
def test_two_cpu_processes_match_one_on_the_same_global_batch(tmp_path):
    one = _run(tmp_path / "one", tmp_path / "one.pt", "--no-bn", "--batch", 8)
    assert one.returncode == 0, one.stderr
    two = _run(tmp_path / "two", tmp_path / "two.pt", "--no-bn", "--batch", 8,
               launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "world 2" in (tmp_path / "two" / "train.log").read_text()
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    _same(a, b, atol=1e-4)
    moved = torch.load(tmp_path / "one" / "pre_train.pt", weights_only=True)["model"]
    assert any(not torch.equal(moved[k], a[k]) for k in a)  # the alter phase did train
