"""Data for automtl: built-in synthetic multi-task scenes, real-set loaders, task vocabulary,
and :func:`build_data` (a config's ``data`` section through :data:`automtl.registry.DATASETS`)."""
from __future__ import annotations

from automtl.data.loaders import TaskView, task_loaders
from automtl.data.real import (
                               NYUD,
                               REAL_SETS,
                               CityScapes,
                               NYUv2,
                               PascalContext,
                               Taskonomy,
                               make_real_loaders,
                               real_loaders,
)
from automtl.data.registration import build_data
from automtl.data.synthetic import TASKS, SyntheticScenes, make_loaders, render_sample
from automtl.data.tasks import IGNORE_INDEX, TASK_SPECS, TaskSpec, task_out_channels, task_spec

__all__ = ["build_data", "TASKS", "SyntheticScenes", "TaskView", "make_loaders", "render_sample", "IGNORE_INDEX",
           "TASK_SPECS", "TaskSpec", "task_out_channels", "task_spec", "REAL_SETS", "CityScapes", "NYUv2",
           "Taskonomy", "NYUD", "PascalContext", "make_real_loaders", "real_loaders", "task_loaders"]
