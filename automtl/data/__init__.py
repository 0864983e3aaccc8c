"""Data for automtl: built-in synthetic multi-task scenes, real-set loaders, task vocabulary."""
from __future__ import annotations

from automtl.data.real import DATASETS, NYUD, CityScapes, NYUv2, PascalContext, Taskonomy, make_real_loaders
from automtl.data.synthetic import TASKS, SyntheticScenes, TaskView, make_loaders, render_sample
from automtl.data.tasks import IGNORE_INDEX, TASK_SPECS, TaskSpec, task_out_channels, task_spec

__all__ = ["TASKS", "SyntheticScenes", "TaskView", "make_loaders", "render_sample", "IGNORE_INDEX",
           "TASK_SPECS", "TaskSpec", "task_out_channels", "task_spec", "DATASETS", "CityScapes", "NYUv2",
           "Taskonomy", "NYUD", "PascalContext", "make_real_loaders"]
