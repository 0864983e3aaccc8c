"""Smoke test of the README's first command: ``python -m automtl demo`` (its --quick form)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_quick_prints_table_and_writes_pictures(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "automtl", "demo", "--quick", "--work-dir", str(tmp_path),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ("single-task", "hard sharing", "AutoMTL", "Δm (%)", "params", "segment_semantic mIoU",
                 "depth_zbuffer rmse"):
        assert name in out, name
    for rel in ("automtl/policy.png", "automtl/policy.json", "curves.png", "table.txt", "baseline_test.json"):
        assert (tmp_path / rel).is_file(), rel
    data = json.loads((tmp_path / "comparison.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["single-task"]["params"] == data["single_task_params"]
    assert rows["hard sharing"]["params"] < data["single_task_params"]
    assert abs(rows["single-task"]["delta_m"]["delta_m_maninis"]) < 1e-9
    assert all("delta_m_maninis" in r["delta_m"] for r in rows.values())


def test_demo_arguments():
    import argparse

    from automtl.cli import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--quick", "--scale", "2"])
    assert args.quick and args.scale == 2.0 and args.work_dir == "work_dirs/demo" and args.threads == 1
    text = parser.format_help()
    assert "--quick" in text and "--work-dir" in text and "--seed" in text
