"""Dense-prediction metrics: segmentation, depth, normals, edges, saliency, plain L1.

Ratios (mIoU, accuracy, δ, % within, F-measures) are reported in percent (0-100), errors
in the target's units (depth) or degrees (normals). Every mean is a pixel mean over the
whole evaluation set, not a mean of per-image values.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from automtl.data.tasks import IGNORE_INDEX
from automtl.metrics.base import Metric, channel_norm, l2_normalize, match_size

__all__ = ["SegmentationMetric", "DepthMetric", "NormalMetric", "EdgeMetric", "SaliencyMetric",
           "L1Metric", "FMeasure"]


def _f64(n: int = 1) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.float64)


def channel_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(1)`` for ``[B,C,H,W]`` (first maximum wins), as C elementwise passes.

    On CPU this is several times faster than ``argmax`` over the strided channel axis.
    """
    if scores.shape[1] > 64 or scores.is_cuda:
        return scores.argmax(dim=1)
    best = scores[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=torch.long, device=scores.device)
    for c in range(1, scores.shape[1]):
        better = scores[:, c] > best
        best = torch.where(better, scores[:, c], best)
        labels[better] = c
    return labels


class SegmentationMetric(Metric):
    """Mean IoU and pixel accuracy from a confusion matrix; target ``ignore_index`` is skipped.

    ``pred`` is ``[B,C,H,W]`` scores (argmax taken) or ``[B,H,W]`` labels. mIoU averages
    over the classes that occur in the target or the prediction (union > 0).
    """

    higher_is_better = {"mIoU": True, "pixel_acc": True}
    primary = "mIoU"

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        super().__init__()

    def _zeros(self) -> dict[str, torch.Tensor]:
        return {"confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        size = tuple(target.shape[-2:])
        if pred.dim() == target.dim() + 1:
            labels = channel_argmax(match_size(pred, size))
        else:
            labels = match_size(pred[:, None], size, mode="nearest")[:, 0].long()
        target = target.long()
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        c = self.num_classes
        idx = target[valid] * c + labels[valid].clamp(0, c - 1)
        self._add("confusion", torch.bincount(idx, minlength=c * c).reshape(c, c))

    def compute(self) -> dict[str, float]:
        conf = self._acc["confusion"].double()
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        present = union > 0
        total = conf.sum()
        if total == 0:
            return {"mIoU": math.nan, "pixel_acc": math.nan}
        miou = (tp[present] / union[present]).mean().item() * 100
        return {"mIoU": miou, "pixel_acc": (tp.sum() / total).item() * 100}

    def per_class_iou(self) -> list[float]:
        """IoU of each class in percent (nan for classes never seen nor predicted)."""
        conf = self._acc["confusion"].double()
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        return [(t / u).item() * 100 if u > 0 else math.nan for t, u in zip(tp, union)]


class DepthMetric(Metric):
    """Absolute and relative error, RMSE and δ < 1.25^k over valid pixels (target > 0)."""

    higher_is_better = {"abs_err": False, "rel_err": False, "rmse": False,
                        "delta_1": True, "delta_2": True, "delta_3": True}
    primary = "rmse"

    def _zeros(self) -> dict[str, torch.Tensor]:
        return {"n": _f64(), "abs": _f64(), "rel": _f64(), "sq": _f64(), "delta": _f64(3)}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = match_size(pred, tuple(target.shape[-2:])).double()
        target = target.double()
        valid = (target > 0) & torch.isfinite(target)
        p, t = pred[valid], target[valid]
        diff = (p - t).abs()
        ratio = torch.maximum(p.clamp_min(1e-9) / t, t / p.clamp_min(1e-9))
        self._add("n", torch.tensor([float(t.numel())]))
        self._add("abs", diff.sum().reshape(1))
        self._add("rel", (diff / t).sum().reshape(1))
        self._add("sq", (diff * diff).sum().reshape(1))
        self._add("delta", torch.stack([(ratio < 1.25 ** k).sum().double() for k in (1, 2, 3)]))

    def compute(self) -> dict[str, float]:
        n = self._acc["n"].item()
        if n == 0:
            return {k: math.nan for k in self.higher_is_better}
        d = (self._acc["delta"] / n * 100).tolist()
        return {"abs_err": self._acc["abs"].item() / n, "rel_err": self._acc["rel"].item() / n,
                "rmse": math.sqrt(self._acc["sq"].item() / n),
                "delta_1": d[0], "delta_2": d[1], "delta_3": d[2]}


class NormalMetric(Metric):
    """Angle error (degrees) of unit normals: mean, median and % within 11.25/22.5/30°.

    Valid pixels have a target of norm > 0.5 (zero vectors mark invalid ones); predictions
    are normalised first. The median (the lower one for an even count) comes from a 0.01° histogram and is
    reported at its bin centre (error ≤ 0.005°).
    """

    higher_is_better = {"mean": False, "median": False, "within_11.25": True,
                        "within_22.5": True, "within_30": True}
    primary = "mean"
    _BIN = 0.01
    _THRESHOLDS = (11.25, 22.5, 30.0)

    def _zeros(self) -> dict[str, torch.Tensor]:
        return {"n": _f64(), "sum": _f64(), "within": _f64(3),
                "hist": torch.zeros(int(round(180 / self._BIN)), dtype=torch.int64)}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = l2_normalize(match_size(pred, tuple(target.shape[-2:])).double())
        target = target.double()
        valid = channel_norm(target) > 0.5
        cos = (pred * l2_normalize(target)).sum(dim=1)[valid].clamp(-1, 1)
        ang = torch.rad2deg(torch.acos(cos))
        nbins = self._acc["hist"].numel()
        bins = (ang / self._BIN).floor().long().clamp(0, nbins - 1)
        self._add("n", torch.tensor([float(ang.numel())]))
        self._add("sum", ang.sum().reshape(1))
        self._add("within", torch.stack([(ang < th).sum().double() for th in self._THRESHOLDS]))
        self._add("hist", torch.bincount(bins, minlength=nbins))

    def compute(self) -> dict[str, float]:
        n = self._acc["n"].item()
        if n == 0:
            return {k: math.nan for k in self.higher_is_better}
        cum = self._acc["hist"].cumsum(0)
        k = int(torch.searchsorted(cum, torch.tensor(math.ceil(n / 2))).item())
        within = (self._acc["within"] / n * 100).tolist()
        return {"mean": self._acc["sum"].item() / n, "median": (k + 0.5) * self._BIN,
                "within_11.25": within[0], "within_22.5": within[1], "within_30": within[2]}


class FMeasure(Metric):
    """Max F-measure over fixed thresholds, counted over the whole set (ODS).

    A predicted positive is correct if a target positive lies within ``tolerance`` pixels
    (Chebyshev distance); a target positive is recalled if a predicted positive lies within
    ``tolerance``. This is a simple dilation match, not the one-to-one bipartite matching
    of the BSDS benchmark, so it is slightly more lenient at the same tolerance.
    Targets < 0 are ignored. ``pred`` holds logits (``from_logits=True``) or probabilities.
    """

    higher_is_better = {"maxF": True}
    primary = "maxF"
    name = "maxF"

    def __init__(self, *, beta2: float = 1.0, tolerance: int = 0, n_thresholds: int = 99,
                 from_logits: bool = True) -> None:
        self.beta2 = float(beta2)
        self.tolerance = int(tolerance)
        self.thresholds = torch.linspace(1, n_thresholds, n_thresholds, dtype=torch.float64) / (n_thresholds + 1)
        self.from_logits = from_logits
        self.best_threshold = math.nan
        super().__init__()

    def _zeros(self) -> dict[str, torch.Tensor]:
        n = self.thresholds.numel() + 1
        return {"pred_pos": torch.zeros(n, dtype=torch.int64), "pred_tp": torch.zeros(n, dtype=torch.int64),
                "gt_hit": torch.zeros(n, dtype=torch.int64), "gt_pos": torch.zeros(1, dtype=torch.int64),
                "abs": _f64(), "n": _f64()}

    def _prob(self, pred: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        pred = match_size(pred, size).double()
        return torch.sigmoid(pred) if self.from_logits else pred

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if target.dim() == 3:
            target = target[:, None]
        prob = self._prob(pred if pred.dim() == 4 else pred[:, None], tuple(target.shape[-2:]))
        valid = target >= 0
        gt = (target > 0.5) & valid
        prob = torch.where(valid, prob, torch.zeros_like(prob))
        r = self.tolerance
        if r > 0:
            near_gt = F.max_pool2d(gt.double(), 2 * r + 1, stride=1, padding=r) > 0
            near_pred = F.max_pool2d(prob, 2 * r + 1, stride=1, padding=r)
        else:
            near_gt, near_pred = gt, prob
        th = self.thresholds.to(prob.device)
        nb = th.numel() + 1
        # bucket b = number of thresholds <= value; positive at threshold k iff b >= k + 1.
        b_pred = torch.bucketize(prob[valid], th, right=True)
        b_tp = torch.bucketize(prob[valid & near_gt], th, right=True)
        b_gt = torch.bucketize(near_pred[gt], th, right=True)
        self._add("pred_pos", torch.bincount(b_pred, minlength=nb))
        self._add("pred_tp", torch.bincount(b_tp, minlength=nb))
        self._add("gt_hit", torch.bincount(b_gt, minlength=nb))
        self._add("gt_pos", torch.tensor([int(gt.sum())]))
        self._add("abs", (prob - gt.double()).abs()[valid].sum().reshape(1))
        self._add("n", torch.tensor([float(valid.sum())]))

    def _curve(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def at_least(h: torch.Tensor) -> torch.Tensor:  # count with bucket >= k+1, k = 0..n-1
            return h.flip(0).cumsum(0).flip(0)[1:].double()

        npos, tp, hit = at_least(self._acc["pred_pos"]), at_least(self._acc["pred_tp"]), at_least(self._acc["gt_hit"])
        ngt = self._acc["gt_pos"].double()
        precision = torch.where(npos > 0, tp / npos.clamp_min(1), torch.zeros_like(tp))
        recall = hit / ngt.clamp_min(1)
        den = self.beta2 * precision + recall
        f = torch.where(den > 0, (1 + self.beta2) * precision * recall / den.clamp_min(1e-12),
                        torch.zeros_like(den))
        return precision, recall, f

    def compute(self) -> dict[str, float]:
        if self._acc["gt_pos"].item() == 0:
            self.best_threshold = math.nan
            return {self.name: math.nan}
        _, _, f = self._curve()
        k = int(f.argmax())
        self.best_threshold = float(self.thresholds[k])
        return {self.name: f[k].item() * 100}


class EdgeMetric(FMeasure):
    """Edge detection ODS F-measure (β² = 1, 1-pixel tolerance by default); see FMeasure."""

    higher_is_better = {"odsF": True}
    primary = "odsF"
    name = "odsF"

    def __init__(self, *, tolerance: int = 1, n_thresholds: int = 99, from_logits: bool = True) -> None:
        super().__init__(beta2=1.0, tolerance=tolerance, n_thresholds=n_thresholds, from_logits=from_logits)


class SaliencyMetric(FMeasure):
    """Saliency max F-measure (β² = 0.3, exact pixels) and mean absolute error."""

    higher_is_better = {"maxF": True, "mae": False}
    primary = "maxF"
    name = "maxF"

    def __init__(self, *, n_thresholds: int = 99, from_logits: bool = True) -> None:
        super().__init__(beta2=0.3, tolerance=0, n_thresholds=n_thresholds, from_logits=from_logits)

    def compute(self) -> dict[str, float]:
        out = super().compute()
        n = self._acc["n"].item()
        out["mae"] = self._acc["abs"].item() / n if n else math.nan
        return out


class L1Metric(Metric):
    """Mean absolute error over pixels whose target is finite and >= 0 (e.g. keypoints2d)."""

    higher_is_better = {"abs_err": False}
    primary = "abs_err"

    def _zeros(self) -> dict[str, torch.Tensor]:
        return {"n": _f64(), "abs": _f64()}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = match_size(pred, tuple(target.shape[-2:])).double()
        target = target.double()
        valid = (target >= 0) & torch.isfinite(target)
        self._add("n", torch.tensor([float(valid.sum())]))
        self._add("abs", (pred - target).abs()[valid].sum().reshape(1))

    def compute(self) -> dict[str, float]:
        n = self._acc["n"].item()
        return {"abs_err": self._acc["abs"].item() / n if n else math.nan}
