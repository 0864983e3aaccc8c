"""One search per work dir: the main search process locks its output folder; workers of the
same study in other work dirs (and its own helpers) still share the study."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from toy_search_config import write_toy_config

from automtl.__main__ import main
from automtl.search.samplers import KEY, WORKER
from automtl.search.storage import open_storage
from automtl.workdir import LOCK_NAME, read_holder

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, delay: float = 0.0, gens: int = 1) -> Path:
    return write_toy_config(tmp_path, delay=delay, gens=gens, population=4)


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _search(cfg: Path, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "automtl", "search", str(cfg), "--work-dir", str(work),
            "--no-progress", "--no-tensorboard", *extra]


def test_second_search_in_a_held_work_dir_exits_2_naming_the_holder(tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work / LOCK_NAME).write_text(f"{socket.gethostname()}:{holder.pid} search\n")
        code = main(["search", str(_config(tmp_path)), "--work-dir", str(work), "--no-progress",
                     "--no-tensorboard"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "WorkDirBusyError" in err and f":{holder.pid} (search)" in err
    assert not (work / "search.db").exists()  # nothing built, nothing written


def test_search_takes_over_a_stale_lock_and_releases_its_own(tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (work / LOCK_NAME).write_text(f"{socket.gethostname()}:{dead} search\n")  # a kill -9
    args = ["search", str(_config(tmp_path)), "--work-dir", str(work), "--no-progress",
            "--no-tensorboard"]
    assert main(args) == 0
    assert read_holder(work) is None and (work / "result.json").exists()
    assert main(args) == 1  # the lock is free; the existing study wants --resume
    assert "already exists" in capsys.readouterr().err and read_holder(work) is None


@pytest.mark.slow
def test_running_search_refuses_a_second_run_but_not_a_worker_of_another_work_dir(tmp_path):
    cfg = _config(tmp_path, delay=0.5, gens=8)  # 32 trials, ~16 s alone
    journal = tmp_path / "study.log"
    storage = ["--storage", f"journal:{journal}", "--study", "s"]
    first = subprocess.Popen(_search(cfg, tmp_path / "w", *storage), env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while read_holder(tmp_path / "w") is None and first.poll() is None \
                and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(_search(cfg, tmp_path / "w", *storage, "--resume"), env=_env(),
                                capture_output=True, text=True, timeout=120)
        joiner = subprocess.run(_search(cfg, tmp_path / "w2", *storage, "--resume"),
                                env=_env(), capture_output=True, text=True, timeout=240)
        out, _ = first.communicate(timeout=240)
    finally:
        first.kill()
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f":{first.pid} (search)" in second.stderr
    assert joiner.returncode == 0, joiner.stdout + joiner.stderr
    assert first.returncode == 0, out
    trials = optuna.load_study(study_name="s", storage=open_storage(f"journal:{journal}")).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [t.system_attrs[KEY] for t in done]
    assert len(done) >= 32 and len(set(keys)) == len(keys)
    pids = {t.system_attrs[WORKER].rpartition(":")[2] for t in done}
    assert len(pids) == 2 and str(first.pid) in pids          # both processes evaluated
    for work in ("w", "w2"):  # each process wrote its outputs, and freed its lock
        assert (tmp_path / work / "result.json").exists()
        assert read_holder(tmp_path / work) is None
