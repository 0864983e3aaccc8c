"""The command line: train → test → sample on the smoke config, config errors as one line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from automtl.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "automtl" / "smoke.py")
FAST = ["trainer.tensorboard=False", "trainer.progress=False"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    (work / ".post_train.pt.tmp999999").write_bytes(b"left by a killed run")
    assert main(["train", SMOKE, "--work-dir", str(work), "--cfg-options", *FAST]) == 0
    return work


def test_train_writes_results_and_cleans_stale_temps(trained):
    results = json.loads((trained / "results.json").read_text())
    assert set(results["results"]) == {"segment_semantic", "depth_zbuffer"}
    assert not (trained / ".post_train.pt.tmp999999").exists()
    from automtl.config import load_config

    assert load_config(trained / "config.py").trainer.tensorboard is False  # overrides are resolved


def test_test_command_reports_selected_metrics(trained, capsys):
    out = trained / "test.json"
    assert main(["test", SMOKE, str(trained / "post_train.pt"), "--eval", "mIoU", "abs_err",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert set(printed["segment_semantic"]) == {"mIoU"} and set(printed["depth_zbuffer"]) == {"abs_err"}
    expected = json.loads((trained / "results.json").read_text())["results"]
    assert printed["segment_semantic"]["mIoU"] == pytest.approx(expected["segment_semantic"]["mIoU"])


def test_test_command_refuses_unknown_metric_and_missing_policy(trained, tmp_path, capsys):
    assert main(["test", SMOKE, str(trained / "post_train.pt"), "--eval", "bbox"]) == 2
    assert "unknown metric(s) ['bbox']" in capsys.readouterr().err
    lone = tmp_path / "w.pt"
    lone.write_bytes((trained / "post_train.pt").read_bytes())
    assert main(["test", SMOKE, str(lone)]) == 2
    assert "pass --policy" in capsys.readouterr().err


def test_sample_command_writes_a_policy(trained, tmp_path, capsys):
    out = tmp_path / "pick"
    assert main(["sample", SMOKE, str(trained / "alter_train_with_reg.pt"), "--n", "3",
                 "--out", str(out)]) == 0
    assert (out / "policy.json").is_file() and "chosen: seed" in capsys.readouterr().out


def test_weights_of_another_model_name_the_keys(trained, capsys):
    other = ["model.backbone.widths=(8, 32)"]
    assert main(["test", SMOKE, str(trained / "post_train.pt"), "--cfg-options", *other]) == 2
    err = capsys.readouterr().err
    assert "CheckpointError" in err and "shape" in err


@pytest.mark.parametrize("option, key", [("pre_train.iters=2.5", "pre_train.iters"),
                                          ("trainer.checkpoint_iter=3", "trainer.checkpoint_iter"),
                                          ("data.batch=3", "data.batch"),
                                          ("model.backbone.type=NoNet", "model.backbone.type")])
def test_config_errors_are_one_line_with_the_key(tmp_path, option, key):
    proc = subprocess.run([sys.executable, "-m", "automtl", "train", SMOKE, "--work-dir", str(tmp_path),
                           "--cfg-options", option], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"key '{key}'" in proc.stderr and "Traceback" not in proc.stderr


def test_tools_are_thin_wrappers():
    for tool in (ROOT / "tools").glob("*.py"):
        text = tool.read_text()
        assert "sys.path" not in text, tool
        assert len(text.splitlines()) < 100, tool
