"""The AutoMTL configs of the real sets: consistent with their data sets, and trained end to end by
``tools/train.py`` on fixtures written in the real on-disk formats."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_fixtures import write_cityscapes, write_nyuv2

from automtl.cli.run_automtl import check_config
from automtl.config import load_config
from automtl.data.real import real_set

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"nyuv2": "NYUv2", "cityscapes": "CityScapes", "taskonomy": "Taskonomy"}

#: fixture-sized overrides: tiny crops and batches, two iterations a phase, a small backbone and head
FAST = ["data.batch_size=2", "data.crop=32", "data.val_size=32", "model.input_shape=(1,3,32,32)",
        "model.backbone=torchvision:resnet18", "model.in_channels=512", "model.head.mid_channels=32",
        "pre_train.iters=2", "alter_train_with_reg.iters=2", "alter_train_with_reg.policy_network_iters=(1,1)",
        "post_train.iters=2", "sample.n=2", "trainer.tensorboard=False", "trainer.progress=False"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_matches_its_data_set(name):
    path = ROOT / "configs" / "automtl" / f"{name}_deeplab_resnet34.py"
    plan = check_config(load_config(path), path=str(path))
    cls = real_set(CONFIGS[name])
    assert plan.data["type"] == cls.__name__ and set(plan.tasks) == set(cls.tasks_available)
    assert plan.model["num_classes"] == cls.num_classes
    assert plan.model["backbone"] == "torchvision:deeplab_resnet34" and plan.model["head"]["type"] == "ASPPHead"
    assert plan.data["batch_size"] == 16
    assert plan.pre_train.iters == 10000 and plan.alter_train_with_reg.iters == 20000
    assert plan.post_train.iters == 30000
    assert (plan.post_train.decay_lr_freq, plan.post_train.decay_lr_rate) == (4000, 0.5)
    for phase in (plan.pre_train, plan.alter_train_with_reg, plan.post_train):
        assert set(phase.loss_lambda) - {"policy"} == set(plan.tasks)
    assert "policy" in plan.alter_train_with_reg.loss_lambda
    # the configs that reproduce AutoMTL's tables decode targets as AutoMTL's loaders do
    assert plan.data.get("encoding", "standard") == {"nyuv2": "automtl"}.get(name, "standard")
    # and train with AutoMTL's optimisers (the phases' defaults)
    assert plan.pre_train.optimizer is None and plan.post_train.optimizer is None
    assert plan.alter_train_with_reg.optimizer is None and plan.alter_train_with_reg.policy_optimizer is None
    assert (plan.pre_train.weight_decay, plan.alter_train_with_reg.weight_decay,
            plan.alter_train_with_reg.policy_weight_decay, plan.post_train.weight_decay) == (1e-4, 1e-4, 5e-4, 1e-4)


def _train(config: str, data_root: Path, work: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(ROOT / "configs" / "automtl" / config),
           "--work-dir", str(work), "--device", "cpu", "--cfg-options", f"data.data_root={data_root}", *FAST]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((work / "results.json").read_text())


def _assert_finite_metrics(results: dict, tasks: list[str]) -> None:
    for task in tasks:
        metrics = results["results"][task]
        assert metrics and all(math.isfinite(v) for v in metrics.values()), (task, metrics)


# Segmentation labels are drawn from 5 and up, so a metric sized for the synthetic scenes' 5 classes
# instead of the set's own would count no pixel and report nan.
@pytest.mark.slow
def test_nyuv2_config_trains_end_to_end(tmp_path):
    write_nyuv2(tmp_path / "NYUv2", n=4, hw=(40, 48), splits=("train", "test"), min_class=5)
    results = _train("nyuv2_deeplab_resnet34.py", tmp_path / "NYUv2", tmp_path / "work")
    _assert_finite_metrics(results, ["segment_semantic", "normal", "depth_zbuffer"])


@pytest.mark.slow
def test_cityscapes_config_trains_end_to_end(tmp_path):
    write_cityscapes(tmp_path / "Cityscapes", n=4, hw=(40, 48), min_class=5)
    results = _train("cityscapes_deeplab_resnet34.py", tmp_path / "Cityscapes", tmp_path / "work")
    _assert_finite_metrics(results, ["segment_semantic", "depth_zbuffer"])
