"""Δm variants by hand, and the baseline file."""
from __future__ import annotations

import json

import pytest

from automtl.errors import ConfigError
from automtl.metrics import Baseline, default_metrics, delta_m, delta_m_all, load_baseline, save_baseline

BASE = {"segment_semantic": {"mIoU": 50.0, "pixel_acc": 80.0},
        "depth_zbuffer": {"rmse": 2.0, "abs_err": 1.0, "delta_1": 80.0}}
RES = {"segment_semantic": {"mIoU": 55.0, "pixel_acc": 76.0},  # +10 %, -5 %
       "depth_zbuffer": {"rmse": 1.8, "abs_err": 1.2, "delta_1": 88.0}}  # +10 %, -20 %, +10 %
HIB = {"segment_semantic": {"mIoU": True, "pixel_acc": True},
       "depth_zbuffer": {"rmse": False, "abs_err": False, "delta_1": True}}
PRIMARY = {"segment_semantic": "mIoU", "depth_zbuffer": "rmse"}


def test_three_variants_by_hand():
    assert delta_m(RES, BASE, HIB, variant="maninis", primary=PRIMARY) == pytest.approx(10.0)
    assert delta_m(RES, BASE, HIB, variant="all_metrics") == pytest.approx(1.0)
    assert delta_m(RES, BASE, HIB, variant="task_balanced") == pytest.approx(1.25)
    assert delta_m(BASE, BASE, HIB, variant="all_metrics") == 0.0


def test_baseline_file_roundtrip(tmp_path):
    metrics = default_metrics(["segment_semantic", "depth_zbuffer"])
    base_results = {"segment_semantic": {"mIoU": 50.0, "pixel_acc": 80.0},
                    "depth_zbuffer": {k: 1.0 for k in metrics["depth_zbuffer"].higher_is_better}}
    path = tmp_path / "sub" / "baseline.json"
    save_baseline(path, base_results, metrics, meta={"iters": 10})
    assert [p.name for p in path.parent.iterdir()] == ["baseline.json"]  # no temp file left
    b = load_baseline(path)
    assert b.primary == PRIMARY and b.meta == {"iters": 10}
    better = {"segment_semantic": {"mIoU": 60.0, "pixel_acc": 80.0},
              "depth_zbuffer": {k: 1.0 for k in base_results["depth_zbuffer"]}}
    d = b.delta(better)
    assert d["delta_m_maninis"] == pytest.approx(10.0)
    assert d["delta_m_task_balanced"] == pytest.approx(5.0)
    assert d["delta_m_all_metrics"] == pytest.approx(20.0 / 8)


def test_bad_inputs_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="normal"):
        delta_m({"normal": {"mean": 1.0}}, BASE, HIB, variant="all_metrics")
    with pytest.raises(ConfigError, match="depth_zbuffer/delta_1"):
        delta_m({"depth_zbuffer": {"rmse": 1.0, "abs_err": 1.0}}, BASE, HIB, variant="all_metrics")
    with pytest.raises(ConfigError, match="variant"):
        delta_m(RES, BASE, HIB, variant="median")
    with pytest.raises(ConfigError, match="missing.json"):
        load_baseline(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "automtl-baseline/1", "metrics": {}, "primary": {}}))
    with pytest.raises(ConfigError, match="higher_is_better"):
        Baseline.load(bad)
    zero = Baseline({"t": {"m": 0.0}}, {"t": {"m": True}}, {"t": "m"})
    with pytest.raises(ConfigError, match="t/m"):
        zero.delta({"t": {"m": 1.0}})


def test_defaults_from_task_metrics_and_bare_files(tmp_path):
    assert delta_m(RES, BASE, variant="maninis") == pytest.approx(10.0)
    assert delta_m_all(RES, BASE)["delta_m_task_balanced"] == pytest.approx(1.25)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"metrics": BASE}))
    b = load_baseline(bare)
    assert b.primary == PRIMARY and b.delta(RES)["delta_m_all_metrics"] == pytest.approx(1.0)
    bare.write_text(json.dumps({"depth_zbuffer": {"sharpness": 1.0}}))
    with pytest.raises(ConfigError, match="depth_zbuffer/sharpness"):
        load_baseline(bare)
