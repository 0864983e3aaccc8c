"""``python -m automtl inspect``: table and --json for prototxt files and torchvision models."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from graph_fixtures import PROTOTXT, ROOT

from automtl.cli import inspect as inspect_cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    inspect_cli.add_arguments(parser)
    return inspect_cli.run(parser.parse_args(argv))


def test_prototxt_table(capsys) -> None:
    assert _run([str(PROTOTXT / "mobilenetv2.prototxt")]) == 0
    out = capsys.readouterr().out
    assert "features.0.0" in out and "1x32x112x112" in out
    assert "2,223,872 parameters" in out and "output [1, 1280, 7, 7]" in out


def test_prototxt_json(capsys) -> None:
    assert _run([str(PROTOTXT / "deeplab_resnet34.prototxt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 21_284_672 and info["output_shape"] == [1, 512, 28, 28]
    assert info["layers"] == len(info["nodes"]) - 1 and info["weighted_layers"] == 36
    assert info["inputs"] == {"data": [1, 3, 224, 224]}
    assert info["nodes"][1]["source"].endswith("deeplab_resnet34.prototxt:7")


def test_torchvision_whole_model_and_backbone(capsys) -> None:
    assert _run(["torchvision:resnet18", "--json", "--input-size", "64"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["output_shape"] == [1, 1000] and whole["params"] == 11_689_512
    assert _run(["torchvision:resnet18", "--backbone", "--json", "--input-size", "64"]) == 0
    trunk = json.loads(capsys.readouterr().out)
    assert trunk["output_shape"] == [1, 512, 2, 2] and trunk["params"] == 11_176_512
    assert _run(["torchvision:mnasnet1_0", "--backbone", "--json", "--input-size", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 3_102_312


@pytest.mark.parametrize("target", ["missing.prototxt", "torchvision:no_such_net"])
def test_errors_exit_2(target: str, capsys) -> None:
    assert _run([target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("missing.prototxt" in err or "no_such_net" in err)


def test_bad_prototxt_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "bad.prototxt"
    path.write_text('input: "x"\nlayer { name: "a" type: "Convolution" bottom: "x" top: "a" }\n')
    assert _run([str(path)]) == 2
    assert "bad.prototxt" in capsys.readouterr().err


def test_module_entry_point() -> None:
    pytest.importorskip("automtl.cli.demo", reason="python -m automtl needs every command module")
    proc = subprocess.run([sys.executable, "-m", "automtl", "inspect", str(PROTOTXT / "resnet18.prototxt"), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] == 11_176_512


def test_export_tool_help_and_run(tmp_path, capsys) -> None:
    from automtl.__main__ import main

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--output", "--dialect", "--full", "--input-size", "--batch", "--name"):
        assert flag in help_text
    out = tmp_path / "r18.prototxt"
    assert main(["export", "resnet18", "--full", "--dialect", "caffe", "--input-size", "64", "-o", str(out)]) == 0
    from automtl.graph import load_prototxt

    graph = load_prototxt(out)
    assert graph.param_count() == 11_689_512 and graph.output_shape == (1, 1000)
    assert main(["export", "mnasnet1_0", "--full", "-o", str(tmp_path / "m.prototxt")]) == 2
    assert "mean" in capsys.readouterr().err and not (tmp_path / "m.prototxt").exists()
    assert main(["export", "mobilenet_v2", "--input-size", "32"]) == 0  # no -o: prints the prototxt
    assert capsys.readouterr().out.startswith('name: "mobilenet_v2"')
