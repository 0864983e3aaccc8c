"""Task vocabulary shared by data, heads, losses and metrics: names, kinds, channels.

One table so a task name means the same target format everywhere (see
``automtl.data.synthetic`` for the exact tensors).
"""
from __future__ import annotations

from dataclasses import dataclass

from automtl.errors import ConfigError

#: Classes of the built-in synthetic scenes (index = label value).
SYNTHETIC_CLASSES: tuple[str, ...] = ("floor", "wall", "sphere", "box", "cylinder")

#: Label value meaning "no label here" for segmentation (and -1 in edge/saliency maps).
IGNORE_INDEX = -1


@dataclass(frozen=True)
class TaskSpec:
    """What a task predicts: its kind (loss/metric family) and output channels."""

    name: str
    kind: str  # "segmentation" | "depth" | "normal" | "edge" | "saliency" | "regression"
    out_channels: int | None  # None: the number of classes of the data set


TASK_SPECS: dict[str, TaskSpec] = {
    "segment_semantic": TaskSpec("segment_semantic", "segmentation", None),
    "human_parts": TaskSpec("human_parts", "segmentation", None),
    "depth_zbuffer": TaskSpec("depth_zbuffer", "depth", 1),
    "normal": TaskSpec("normal", "normal", 3),
    "edge_texture": TaskSpec("edge_texture", "edge", 1),
    "saliency": TaskSpec("saliency", "saliency", 1),
    "keypoints2d": TaskSpec("keypoints2d", "regression", 1),
}


def task_spec(task: str) -> TaskSpec:
    """The spec of ``task``; raises ConfigError naming the known tasks when unknown."""
    try:
        return TASK_SPECS[task]
    except KeyError:
        raise ConfigError(f"unknown task; known tasks: {sorted(TASK_SPECS)}", key=task) from None


def task_out_channels(task: str, *, num_classes: int | None = None) -> int:
    """Output channels a head needs for ``task``.

    Segmentation tasks take ``num_classes`` (default: the synthetic scenes' 5 classes).
    """
    spec = task_spec(task)
    if spec.out_channels is not None:
        return spec.out_channels
    if num_classes is None:
        if task != "segment_semantic":
            raise ConfigError("num_classes is required for this task", key=task)
        return len(SYNTHETIC_CLASSES)
    return int(num_classes)
