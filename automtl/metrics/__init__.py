"""Per-task metrics (accumulate with ``update``, read with ``compute``) and Δm.

Example:
    >>> import torch
    >>> from automtl.metrics import default_metrics
    >>> metrics = default_metrics(["segment_semantic", "depth_zbuffer"])
    >>> metrics["depth_zbuffer"].update(torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4))
    >>> metrics["depth_zbuffer"].compute()["rmse"]
    0.0
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from automtl.data.tasks import task_out_channels, task_spec
from automtl.metrics.base import Metric
from automtl.metrics.delta import (
    VARIANTS,
    Baseline,
    default_directions,
    delta_m,
    delta_m_all,
    load_baseline,
    relative_diffs,
    save_baseline,
)
from automtl.metrics.dense import (
    DepthMetric,
    EdgeMetric,
    FMeasure,
    L1Metric,
    NormalMetric,
    SaliencyMetric,
    SegmentationMetric,
)

__all__ = ["Metric", "SegmentationMetric", "DepthMetric", "NormalMetric", "EdgeMetric", "SaliencyMetric",
           "FMeasure", "L1Metric", "default_metrics", "metric_for_task", "VARIANTS", "Baseline", "default_directions",
           "delta_m", "delta_m_all", "relative_diffs", "save_baseline", "load_baseline"]


#: the metric of each task kind but segmentation (which needs its number of classes)
_METRIC_BY_KIND: dict[str, Callable[[], Metric]] = {
    "depth": DepthMetric, "normal": NormalMetric, "edge": EdgeMetric, "saliency": SaliencyMetric,
    "regression": L1Metric,
}


def metric_for_task(task: str, *, num_classes: int | None = None) -> Metric:
    """The standard metric of ``task`` (segmentation needs ``num_classes``; default 5, synthetic)."""
    kind = task_spec(task).kind
    if kind == "segmentation":
        return SegmentationMetric(task_out_channels(task, num_classes=num_classes))
    return _METRIC_BY_KIND[kind]()


def default_metrics(tasks: Iterable[str], *, num_classes: int | Mapping[str, int] | None = None
                    ) -> dict[str, Metric]:
    """``{task: metric}`` for ``tasks``; ``num_classes`` per segmentation task or for all."""
    out = {}
    for task in tasks:
        n = num_classes.get(task) if isinstance(num_classes, Mapping) else num_classes
        out[task] = metric_for_task(task, num_classes=n)
    return out
