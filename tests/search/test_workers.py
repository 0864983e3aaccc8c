"""Crash safety and parallel workers: SIGKILL mid-generation + resume; 2 workers on a journal;
helper workers die with the search that started them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from toy_search_config import write_toy_config

from automtl.search.samplers import CANDIDATE, DUPLICATE, INTERRUPTED, KEY, WORKER, is_live
from automtl.search.storage import open_storage
from automtl.search.study import pid_alive

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "search.py"
SEARCH = [sys.executable, "-m", "automtl", "search"]


def _config(tmp_path: Path, delay: float = 0.0, gens: int = 1) -> Path:
    return write_toy_config(tmp_path, delay=delay, gens=gens, population=8, top_k=3)


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _trials(url: str) -> list:
    storage = open_storage(url)
    return optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)


def _poll_until(storage_url: str, proc: subprocess.Popen, ready, timeout: float = 180.0) -> bool:
    """Poll the study (one storage connection) until ``ready(trials)`` or the process ends."""
    storage, study_id = None, None
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            if storage is None:
                storage = open_storage(storage_url)
                study_id = storage.get_study_id_from_name("s")
            if ready(storage.get_all_trials(study_id, deepcopy=False)):
                return True
        except Exception:  # the study is not created yet
            storage = None
    return False


@pytest.mark.slow
def test_sigkill_mid_generation_then_resume(tmp_path):
    cfg = _config(tmp_path, delay=0.25, gens=2)
    work = tmp_path / "w"
    url = f"sqlite:///{work / 'search.db'}"
    cmd = [sys.executable, str(TOOL), str(cfg), "--work-dir", str(work), "--no-progress",
           "--no-tensorboard"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    def mid_generation(ts) -> bool:  # generation 1 (of 0..1) is under way, one trial running
        done = sum(t.state == TrialState.COMPLETE for t in ts)
        return done >= 10 and any(t.state == TrialState.RUNNING and CANDIDATE in t.system_attrs
                                  for t in ts)

    reached = _poll_until(url, proc, mid_generation)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "search did not reach the kill point: " + proc.stdout.read().decode()[-2000:]
    before = _trials(url)
    done_before = {t.number: (t.system_attrs[KEY], t.values) for t in before
                   if t.state == TrialState.COMPLETE}
    orphan = [t for t in before if t.state == TrialState.RUNNING and CANDIDATE in t.system_attrs]
    assert orphan and len(done_before) < 16

    out = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    after = _trials(url)
    done = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(done) == 16                                    # 2 generations of 8
    keys = [t.system_attrs[KEY] for t in done]
    assert len(set(keys)) == len(keys)                        # nothing evaluated twice
    for t in done:                                            # finished trials kept as they were
        if t.number in done_before:
            assert done_before[t.number] == (t.system_attrs[KEY], t.values)
    lost = orphan[0]
    marked = next(t for t in after if t.number == lost.number)
    assert marked.state == TrialState.FAIL and marked.system_attrs[INTERRUPTED]
    assert "interrupted" in marked.user_attrs["error"]
    assert lost.system_attrs[KEY] in keys                     # its candidate was not lost
    assert (work / "trials.csv").exists() and (work / "best.json").exists()


@pytest.mark.slow
def test_two_workers_on_one_journal_study(tmp_path):
    cfg = _config(tmp_path, delay=0.5, gens=3)  # long enough for the helper to start
    work = tmp_path / "w"
    work.mkdir()
    journal = work / "study.log"
    cmd = SEARCH + [str(cfg), "--work-dir", str(work), "--workers", "2",
                    "--storage", f"journal:{journal}", "--no-progress", "--no-tensorboard"]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    ts = _trials(f"journal:{journal}")
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(done) >= 24 and all(t.state != TrialState.RUNNING for t in ts)
    keys = [t.system_attrs[KEY] for t in ts if is_live(t)]
    assert len(keys) == sum(t.state != TrialState.PRUNED for t in ts)
    assert len(set(keys)) == len(keys)                        # no duplicate evaluation
    # a trial that met another worker's trial holding its candidate gave way before evaluating
    assert all(t.system_attrs.get(DUPLICATE) and "scores" not in t.user_attrs
               for t in ts if t.state == TrialState.PRUNED)
    workers = {t.system_attrs[WORKER] for t in done}
    assert len(workers) == 2                                  # both processes evaluated trials
    rows = (work / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == len(ts) + 1


def _pids_gone(pids, timeout: float = 20.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_die_with_parent_ends_the_child_when_the_parent_is_killed():
    """A process that called ``die_with_parent`` gets SIGTERM when its parent is SIGKILLed."""
    child = ("import os, sys, time; from automtl.search.workers import die_with_parent; "
             "die_with_parent(int(sys.argv[1])); print(os.getpid(), flush=True); time.sleep(60)")
    parent = ("import os, subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())], "
              "stdout=subprocess.PIPE, text=True); print(p.stdout.readline().strip(), flush=True); "
              "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", parent], env=_env(), stdout=subprocess.PIPE,
                            text=True)
    try:
        pid = int(proc.stdout.readline())
        assert pid_alive(pid)
    finally:
        proc.kill()
        proc.wait()
    assert _pids_gone([pid]), "the child outlived its killed parent"


@pytest.mark.slow
def test_helper_workers_die_with_the_main_process_then_resume_finishes(tmp_path):
    cfg = _config(tmp_path, delay=0.2, gens=100)
    work = tmp_path / "w"
    work.mkdir()
    url = f"journal:{work / 'study.log'}"
    cmd = SEARCH + [str(cfg), "--work-dir", str(work), "--workers", "2", "--storage", url,
                    "--no-progress", "--no-tensorboard"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    me = str(proc.pid)

    def helper_evaluating(ts) -> bool:
        return any(t.system_attrs.get(WORKER, ":").rpartition(":")[2] not in (me, "")
                   for t in ts)

    reached = _poll_until(url, proc, helper_evaluating)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "no helper evaluated a trial: " + proc.stdout.read().decode()[-2000:]
    helpers = {int(t.system_attrs[WORKER].rpartition(":")[2]) for t in _trials(url)} - {proc.pid}
    assert len(helpers) == 1
    assert _pids_gone(helpers, timeout=5.0), "a helper worker outlived the killed search"

    before = _trials(url)
    done_before = {t.number: t.system_attrs[KEY] for t in before if t.state == TrialState.COMPLETE}
    orphans = {t.number for t in before if t.state == TrialState.RUNNING}
    gens = len(done_before) // 8 + 2  # the resumed run has at least 9 more candidates to do
    out = subprocess.run(cmd + ["--resume", "--cfg-options", f"search.generations={gens}",
                                "evaluator.delay=0.01"], env=_env(), capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    after = _trials(url)
    done = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(done) >= 8 * gens and all(t.state != TrialState.RUNNING for t in after)
    keys = [t.system_attrs[KEY] for t in done]
    assert len(set(keys)) == len(keys)          # no candidate evaluated twice across both runs
    assert all(t.system_attrs[KEY] == done_before[t.number] for t in done
               if t.number in done_before)      # the interrupted run's results kept
    assert all(after[n].state == TrialState.FAIL for n in orphans)
    for name in ("best.json", "trials.csv", "result.json"):
        assert (work / name).exists(), name
    assert len((work / "trials.csv").read_text().strip().splitlines()) == len(after) + 1
