"""Each metric against values computed by hand."""
from __future__ import annotations

import math

import pytest
import torch

from automtl.metrics import (
    DepthMetric,
    EdgeMetric,
    FMeasure,
    L1Metric,
    NormalMetric,
    SaliencyMetric,
    SegmentationMetric,
    default_metrics,
)


def _img(values, c=None):
    t = torch.tensor(values, dtype=torch.float32)
    return t.reshape(1, 1, 1, -1) if c is None else t.T.reshape(1, c, 1, -1)


def test_segmentation_hand_case_and_accumulation():
    target = torch.tensor([[[0, 0, 1, 1, 2, -1]]])
    labels = torch.tensor([[[0, 1, 1, 1, 0, 2]]])
    m = SegmentationMetric(3)
    m.update(labels, target)
    r = m.compute()
    # IoU: class0 1/3, class1 2/3, class2 0/1 (the prediction on the ignored pixel does not count)
    assert r["mIoU"] == pytest.approx(100 / 3)
    assert r["pixel_acc"] == pytest.approx(60.0)
    # Logits give the same; two batches accumulate like one.
    logits = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    m2 = SegmentationMetric(3)
    m2.update(logits[..., :3], target[..., :3])
    m2.update(logits[..., 3:], target[..., 3:])
    assert m2.compute() == pytest.approx(r)
    m2.reset()
    assert math.isnan(m2.compute()["mIoU"])


def test_segmentation_upsamples_low_resolution_logits():
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = 1.0  # class 1 everywhere
    m = SegmentationMetric(2)
    m.update(logits, torch.ones(1, 4, 4, dtype=torch.long))
    assert m.compute() == {"mIoU": 100.0, "pixel_acc": 100.0}


def test_depth_hand_case():
    m = DepthMetric()
    m.update(_img([1.5, 1.1, 4.0, 9.0]), _img([1.0, 2.0, 0.0, 10.0]))
    r = m.compute()
    assert r["abs_err"] == pytest.approx(0.8)
    assert r["rel_err"] == pytest.approx(0.35)
    assert r["rmse"] == pytest.approx(math.sqrt(2.06 / 3))
    assert r["delta_1"] == pytest.approx(100 / 3)
    assert r["delta_2"] == pytest.approx(200 / 3)
    assert r["delta_3"] == pytest.approx(100.0)
    assert DepthMetric.higher_is_better["rmse"] is False and DepthMetric.primary == "rmse"


def test_normal_hand_case():
    s, c = math.sin(math.radians(20)), math.cos(math.radians(20))
    pred = _img([[0, 0, 1], [1, 0, 0], [0, 2, 2], [0, 0, -1], [s, 0, c], [1, 0, 0]], c=3)
    target = _img([[0, 0, 1]] * 5 + [[0, 0, 0]], c=3)  # last pixel invalid
    m = NormalMetric()
    m.update(pred, target)
    r = m.compute()  # angles 0, 90, 45, 180, 20
    assert r["mean"] == pytest.approx(67.0, abs=1e-4)
    assert r["median"] == pytest.approx(45.0, abs=0.01)
    assert r["within_11.25"] == pytest.approx(20.0)
    assert r["within_22.5"] == pytest.approx(40.0)
    assert r["within_30"] == pytest.approx(40.0)


def test_fmeasure_hand_case_beta1_and_saliency():
    prob, gt = _img([0.95, 0.35, 0.55, 0.05]), _img([1, 1, 0, 0])
    f = FMeasure(n_thresholds=9, from_logits=False)
    f.update(prob, gt)
    assert f.compute()["maxF"] == pytest.approx(80.0)  # P=2/3, R=1 at thresholds <= 0.3
    assert f.best_threshold == pytest.approx(0.1)
    s = SaliencyMetric(n_thresholds=9, from_logits=False)
    s.update(prob, gt)
    r = s.compute()
    assert r["maxF"] == pytest.approx(81.25)  # beta2=0.3: P=1, R=.5 wins
    assert r["mae"] == pytest.approx(0.325)
    # Logits are turned into probabilities first.
    logit = torch.log(prob / (1 - prob))
    s2 = SaliencyMetric(n_thresholds=9)
    s2.update(logit, gt)
    assert s2.compute() == pytest.approx(r)


def test_edge_tolerance_and_ignore():
    gt = _img([0, 0, 1, 0, 0])
    prob = _img([0.8, 0, 0, 0.9, 0])
    tol1 = EdgeMetric(from_logits=False)
    tol1.update(prob, gt)
    assert tol1.compute()["odsF"] == pytest.approx(100.0)  # one pixel off is a hit at tol 1
    tol0 = EdgeMetric(tolerance=0, from_logits=False)
    tol0.update(prob, gt)
    assert tol0.compute()["odsF"] == pytest.approx(0.0)
    # The false positive at 0.8 stops costing precision when its pixel is ignored.
    exact = EdgeMetric(tolerance=0, from_logits=False)
    exact.update(_img([0.8, 0, 0.6, 0, 0]), _img([-1, 0, 1, 0, 0]))
    assert exact.compute()["odsF"] == pytest.approx(100.0)


def test_l1_and_state_roundtrip():
    m = L1Metric()
    m.update(_img([1.0, 2.0, 3.0]), _img([1.5, 2.0, -1.0]))
    assert m.compute() == {"abs_err": pytest.approx(0.25)}
    m2 = L1Metric()
    m2.load_state_dict(m.state_dict())
    assert m2.compute() == m.compute()


def test_sync_sums_over_ranks_single_process(tmp_path):
    import torch.distributed as dist

    m = DepthMetric()
    m.update(_img([2.0]), _img([1.0]))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        m.sync()
    finally:
        dist.destroy_process_group()
    assert m.compute()["abs_err"] == pytest.approx(1.0)


def test_default_metrics_per_task():
    m = default_metrics(["segment_semantic", "depth_zbuffer", "normal", "edge_texture", "saliency",
                         "keypoints2d"], num_classes={"segment_semantic": 19})
    assert isinstance(m["segment_semantic"], SegmentationMetric) and m["segment_semantic"].num_classes == 19
    assert isinstance(m["normal"], NormalMetric) and isinstance(m["keypoints2d"], L1Metric)
    assert default_metrics(["segment_semantic"])["segment_semantic"].num_classes == 5
    for metric in m.values():
        assert metric.primary in metric.higher_is_better


def test_channel_argmax_matches_torch_first_max():
    from automtl.metrics.dense import channel_argmax

    x = torch.randn(3, 7, 5, 4)
    x[0, 2] = x[0, 5] = 100.0  # tie: the first maximum wins, as in torch.argmax
    assert torch.equal(channel_argmax(x), x.argmax(1))
