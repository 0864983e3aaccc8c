"""``python -m automtl train`` killed with SIGKILL at chosen and random moments, then resumed:
the same weights, results and curves as an uninterrupted run, no temporary file left, the
killed run's lock taken over; one run per work dir; a resume with other settings refused.

Kill points come from ``_kill_hook/sitecustomize.py`` (put on PYTHONPATH, driven by the
``AUTOMTL_TEST_HOOK`` environment variable).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from automtl.io import pid_alive

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(__file__).with_name("_kill_hook")
SMOKE = str(ROOT / "configs" / "automtl" / "smoke.py")
SUPERNET = str(ROOT / "configs" / "supernet" / "vit_mvt_micro_synthetic.py")
FAST = ["trainer.tensorboard=False"]
TINY_SUPERNET = ["supernet_train.steps=4", "supernet_train.checkpoint_every=2", "data.n_train=16",
                 "data.batch_size=8", "data.size=32"]


def _command(config: str, work: Path, *extra: str, options=FAST) -> list[str]:
    return [sys.executable, "-m", "automtl", "train", config, "--work-dir", str(work), "--cfg-options",
            *options, *extra]


def _env(hook: dict | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(HOOK), str(ROOT)]))
    env.pop("AUTOMTL_TEST_HOOK", None)
    if hook is not None:
        env["AUTOMTL_TEST_HOOK"] = json.dumps(hook)
    return env


def _train(work: Path, *extra: str, hook: dict | None = None, config: str = SMOKE, options=FAST):
    return subprocess.run(_command(config, work, *extra, options=options), env=_env(hook), capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ck = torch.load(path, weights_only=True)
    return ck.get("model", ck.get("state_dict"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _assert_clean(work: Path) -> None:
    assert sorted(p.name for p in work.rglob(".*.tmp*")) == []
    assert not (work / ".lock").exists()


def _assert_like_reference(work: Path, ref: Path) -> None:
    _assert_clean(work)
    _assert_same_weights(work / "post_train.pt", ref / "post_train.pt")
    got, want = (json.loads((w / "results.json").read_text()) for w in (work, ref))
    assert (got["results"], got["params"]) == (want["results"], want["params"])
    assert json.loads((work / "history.json").read_text()) == json.loads((ref / "history.json").read_text())


def _killed_holding_the_lock(proc: subprocess.CompletedProcess, work: Path) -> int:
    """The pid of a run killed with SIGKILL, whose lock (naming it) is left behind."""
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    host, pid = (work / ".lock").read_text().split()[0].rsplit(":", 1)
    assert host == socket.gethostname() and not pid_alive(int(pid))
    return int(pid)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted smoke run (4 iterations a phase); its curves have each iteration's points once."""
    work = tmp_path_factory.mktemp("reference")
    proc = _train(work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_clean(work)
    covered: dict[str, set[int]] = {}
    for tag, points in json.loads((work / "history.json").read_text()).items():
        steps = [s % 1_000_000 for s, _ in points]
        assert steps == sorted(set(steps)), tag  # each point once, in order
        covered.setdefault(tag.split("/")[0], set()).update(steps)
    assert covered == {p: {1, 2, 3, 4} for p in ("pre_train", "alter_train_with_reg", "post_train")}
    return work


KILLS = {
    "during the first checkpoint write": {"file": "pre_train_latest.pt", "nth": 1, "when": "during"},
    "between a checkpoint and history.json": {"file": "alter_train_with_reg_latest.pt", "nth": 1, "when": "after"},
    # Adam steps: pre_train 1-4, the 2 policy steps of alter_train_with_reg 5-6 (its weight steps use
    # AutoMTL's SGD), post_train 7-10: step 9 is post_train iteration 3 of 4
    "mid-iteration after a checkpoint": {"step": 9},
    "during the final weights write": {"file": "post_train.pt", "nth": 1, "when": "during"},
}


@pytest.mark.slow
@pytest.mark.parametrize("hook", list(KILLS.values()), ids=list(KILLS))
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, reference, hook):
    work = tmp_path / "run"
    pid = _killed_holding_the_lock(_train(work, hook=hook), work)
    if hook.get("when") == "during":
        assert list(work.rglob(f".{hook['file']}.tmp{pid}")), "the kill did not land inside the write"
    resumed = _train(work, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_like_reference(work, reference)


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_matches_an_uninterrupted_run(tmp_path, reference):
    work, delay = tmp_path / "run", random.uniform(4.0, 9.0)
    run = subprocess.Popen(_command(SMOKE, work), env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, cwd=ROOT)
    time.sleep(delay)
    run.kill()
    run.wait(timeout=60)
    resumed = _train(work, "--resume")
    assert resumed.returncode == 0, f"killed after {delay:.1f}s: {resumed.stderr[-2000:]}"
    _assert_like_reference(work, reference)


@pytest.mark.slow
def test_a_second_run_in_a_busy_work_dir_is_refused_and_the_first_is_intact(tmp_path, reference):
    work, gate = tmp_path / "run", tmp_path / "gate"
    gate.mkdir()
    hook = {"file": "alter_train_with_reg_latest.pt", "nth": 1, "when": "pause", "dir": str(gate)}
    first = subprocess.Popen(_command(SMOKE, work), env=_env(hook), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not (gate / "paused").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert (gate / "paused").exists(), "the first run never reached its checkpoint"
        second = _train(work, "--seed", "5")
        (gate / "go").touch()
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "WorkDirBusyError" in lines[0], second.stderr[-2000:]
    assert f"{socket.gethostname()}:{first.pid} (train)" in lines[0]
    assert first.returncode == 0, err[-2000:]
    assert "seed = 0" in (work / "config.py").read_text()  # the refused run wrote nothing
    _assert_like_reference(work, reference)


@pytest.mark.slow
def test_resume_with_other_settings_names_the_keys_unless_allowed(tmp_path, reference):
    work = tmp_path / "run"
    shutil.copytree(reference, work)
    refused = _train(work, "--resume", options=[*FAST, "data.size=32"])
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "CheckpointError" in lines[0], refused.stderr[-2000:]
    assert "checkpoint was written with data.size=16, this run has data.size=32" in lines[0]
    assert not (work / ".lock").exists()
    # cadence may change; sample.n (read by post-train) only when allowed
    allowed = _train(work, "--resume", "--allow-changed", "sample.n",
                     options=[*FAST, "trainer.print_iters=1", "sample.n=3"])
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    _assert_like_reference(work, reference)


@pytest.mark.slow
def test_supernet_sigkill_during_a_checkpoint_write_then_resume(tmp_path):
    full = _train(tmp_path / "full", config=SUPERNET, options=TINY_SUPERNET)
    assert full.returncode == 0, full.stderr[-2000:]
    hook = {"file": "supernet_latest.pt", "nth": 2, "when": "during"}  # the step-4 write; step 2 is on disk
    cut = tmp_path / "cut"
    pid = _killed_holding_the_lock(_train(cut, hook=hook, config=SUPERNET, options=TINY_SUPERNET), cut)
    assert list(cut.rglob(f".supernet_latest.pt.tmp{pid}"))
    history = json.loads((tmp_path / "full" / "supernet_history.json").read_text())
    assert json.loads((cut / "supernet_history.json").read_text()) == history[:2]  # flushed with the checkpoint
    resumed = _train(cut, "--resume", config=SUPERNET, options=TINY_SUPERNET)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_clean(cut)
    _assert_same_weights(cut / "supernet.pt", tmp_path / "full" / "supernet.pt")
    assert json.loads((cut / "supernet_history.json").read_text()) == history


@pytest.mark.slow
def test_under_torchrun_only_rank_0_takes_the_lock(tmp_path):
    work = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*launcher, *_command(SMOKE, work)[1:]], env=_env(), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]  # rank 1 taking the lock would fail as busy
    assert "world 2" in (work / "train.log").read_text()
    _assert_clean(work)
