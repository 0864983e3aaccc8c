"""One mmengine model across mmpretrain, mmdet and mmseg: a shared searched backbone + a task
model of each library.

:class:`MMMultiTaskModel` holds ONE backbone serving several tasks (a ViT-MVT subnet with
layer-adaptive sharing, :mod:`automtl.mm.shared_backbone` / :mod:`automtl.mm.compact_backbone`,
or an AutoMTL branched model, :mod:`automtl.mm.branched_backbone`)
and per task a complete model of that task's library, built by that library's registry: an
mmpretrain ``ImageClassifier`` (neck + ``LinearClsHead``), an mmdet ``MaskRCNN`` (pyramid neck,
RPN, RoI heads) and an mmseg ``EncoderDecoder`` (e.g. UPerNet). Each task model's backbone is
:class:`TaskFeatures`, which hands on the shared backbone's maps, so each library's own
``loss`` / ``predict`` code (proposals, RoI sampling, resizing to the original image…) runs
unchanged and each task keeps its own data preprocessor (normalisation, padding to a size
divisor, the segmentation pad value).

A training batch mixes samples of the tasks (:mod:`automtl.mm.mixed_data`); the data
preprocessor splits it by each sample's ``task`` and each task runs on its own images. The
losses come back in one dict, prefixed ``cls.``, ``det.``, ``seg.``, plus every backbone
``auxiliary_losses()`` after each task's forward (``<task>.aux_loss.<name>``).
:meth:`MMMultiTaskModel.predict_all` runs the same images through every task, the blocks that
tasks share running once.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mmengine.config import ConfigDict
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import Tensor, nn

from automtl.errors import ConfigError, DataError, ModelError, UnknownTaskError
from automtl.mm.mixed_data import task_scope
from automtl.mm.scopes import build_in_scope, register_mm
from automtl.registry import MODELS
from automtl.train.steps import AuxiliaryLosses, auxiliary_loss_modules

#: the modes of ``forward`` (mmengine's)
MODES = ("loss", "predict", "tensor")


@register_mm()
class TaskFeatures(nn.Module):
    """Backbone of a task model inside :class:`MMMultiTaskModel`: returns the shared
    backbone's maps it is given (a tuple of (B, C, h, w) tensors)."""

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if isinstance(feats, Tensor) or not all(isinstance(f, Tensor) for f in feats):
            raise ModelError("TaskFeatures expects the shared backbone's tuple of maps; call the "
                             "task model through MMMultiTaskModel")
        return tuple(feats)


class MultiTaskDataPreprocessor(BaseDataPreprocessor):
    """Splits a mixed batch by each data sample's ``task`` and runs that task's own data
    preprocessor on its part: ``{"inputs": {task: batch}, "data_samples": {task: [...]}}``."""

    def __init__(self, preprocessors: Mapping[str, nn.Module]) -> None:
        super().__init__()
        # held, not registered: they are modules of the task models already
        self._per_task = dict(preprocessors)

    def forward(self, data: dict, training: bool = False) -> dict[str, Any]:  # type: ignore[override]
        inputs, samples = data["inputs"], data.get("data_samples")
        if samples is None or len(samples) != len(inputs):
            raise DataError("a multi-task batch needs one data sample per image (each tagged with its "
                            "task by MultiTaskDataset)")
        parts: dict[str, tuple[list[Any], list[Any]]] = {}
        for x, ds in zip(inputs, samples):
            task = ds.metainfo.get("task")
            if task not in self._per_task:
                raise DataError(f"data sample tagged with task {task!r}; the model has "
                                f"{sorted(self._per_task)} (build the loader's dataset with MultiTaskDataset)")
            xs, dss = parts.setdefault(task, ([], []))
            xs.append(x)
            dss.append(ds)
        out_inputs, out_samples = {}, {}
        for task, (xs, dss) in parts.items():
            done = self._per_task[task]({"inputs": xs, "data_samples": dss}, training)
            out_inputs[task], out_samples[task] = done["inputs"], done["data_samples"]
        return {"inputs": out_inputs, "data_samples": out_samples}


def default_samples(scope: str, task: str, images: Tensor) -> list[Any]:
    """Data samples describing un-resized, un-padded ``images`` for a task model of ``scope``."""
    h, w = int(images.shape[-2]), int(images.shape[-1])
    meta: dict[str, Any] = {"task": task, "img_shape": (h, w), "ori_shape": (h, w), "pad_shape": (h, w)}
    if scope == "mmdet":
        from mmdet.structures import DetDataSample as Sample

        meta.update(batch_input_shape=(h, w), scale_factor=(1.0, 1.0))
    elif scope == "mmseg":
        from mmseg.structures import SegDataSample as Sample

        meta.update(padding_size=[0, 0, 0, 0])
    else:
        from mmpretrain.structures import DataSample as Sample
    return [Sample(metainfo=dict(meta)) for _ in range(images.shape[0])]


@register_mm()
class MMMultiTaskModel(BaseModel):
    """One shared backbone and one OpenMMLab task model per task.

    Args:
        backbone: a backbone serving every task: ``forward(x, task)`` → maps and
            ``forward_all(x, tasks)`` → ``{task: maps}`` (``ViTMVTSharingBackbone``,
            ``ViTMVTMultiTaskBackbone``, ``AutoMTLMultiTaskBackbone``).
        tasks: ``{task: model config of its library}``, e.g. ``cls=dict(type="ImageClassifier",
            neck=…, head=…, data_preprocessor=…)``; the ``backbone`` key is left out (it is
            :class:`TaskFeatures`).
        scopes: the library of each task (defaults: cls → mmpretrain, det → mmdet,
            seg → mmseg).
        loss_weights: a factor per task on its losses (default 1).
        init_cfg: mmengine initialisation config.
    """

    #: it adds its backbone's auxiliary losses to its loss dict itself (see the runner)
    collects_auxiliary_losses = True

    def __init__(self, backbone: Mapping[str, Any] | nn.Module, tasks: Mapping[str, Mapping[str, Any]],
                 scopes: Mapping[str, str] | None = None, loss_weights: Mapping[str, float] | None = None,
                 init_cfg: dict | list[dict] | None = None, data_preprocessor: Any = None) -> None:
        if data_preprocessor is not None:
            raise ConfigError("each task model has its own data_preprocessor; leave it out of the "
                              "multi-task model", key="model.data_preprocessor")
        super().__init__(init_cfg=init_cfg)
        if not isinstance(tasks, Mapping) or not tasks:
            raise ConfigError("must map each task to its OpenMMLab model config", key="model.tasks")
        self.scopes = {t: task_scope(t, scopes, key="model.scopes") for t in tasks}
        self.backbone: Any = backbone if isinstance(backbone, nn.Module) else MODELS.build(dict(backbone))
        served = tuple(getattr(self.backbone, "tasks", ()))
        missing = [t for t in tasks if t not in served]
        if missing:
            raise ConfigError(f"the backbone serves {list(served)}, not {missing}", key="model.backbone.tasks")
        models = {}
        for task, cfg in tasks.items():
            cfg = ConfigDict(copy.deepcopy(dict(cfg)))  # the libraries read settings as attributes
            given = cfg.get("backbone")
            if given is not None and not (isinstance(given, Mapping) and given.get("type") == "TaskFeatures"):
                raise ConfigError("a task model takes its features from the shared backbone: leave "
                                  "its backbone out", key=f"model.tasks.{task}.backbone")
            cfg["backbone"] = dict(type="TaskFeatures")
            models[task] = build_in_scope(self.scopes[task], cfg)
        self.task_models = nn.ModuleDict(models)
        self.data_preprocessor = MultiTaskDataPreprocessor(
            {t: m.get_submodule("data_preprocessor") for t, m in self.task_models.items()})
        weights = dict(loss_weights or {})
        unknown = [t for t in weights if t not in tasks]
        if unknown:
            raise ConfigError(f"loss weights for unknown task(s) {unknown}; tasks: {list(tasks)}",
                              key="model.loss_weights")
        self.loss_weights = {t: float(weights.get(t, 1.0)) for t in tasks}
        self._aux = AuxiliaryLosses(auxiliary_loss_modules(self.backbone))

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, in config order."""
        return tuple(self.task_models)

    def task_model(self, task: str) -> Any:
        """The OpenMMLab model of ``task``."""
        if task not in self.task_models:
            raise UnknownTaskError(f"unknown task {task!r}; the model has {list(self.tasks)}")
        return self.task_models[task]

    # ---------------------------------------------------------------- mmengine entry point
    def forward(self, inputs: Mapping[str, Tensor] | Tensor, data_samples: Any = None,  # type: ignore[override]
                mode: str = "tensor") -> Any:
        """``mode="loss"`` → one loss dict; ``"predict"`` → data samples with predictions;
        ``"tensor"`` → ``{task: raw head outputs}``. ``inputs`` is ``{task: batch}`` (what the
        data preprocessor makes of a mixed batch) or one batch meant for every task."""
        if mode not in MODES:
            raise ModelError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
        if isinstance(inputs, Tensor):
            if mode == "loss":
                raise ModelError("training needs each task's own batch and labels ({task: batch})")
            if mode == "predict":
                results = self.predict_all(inputs, data_samples)
                return [s for t in results for s in results[t]]
            feats = self.backbone.forward_all(inputs, self.tasks)
            return {t: self.task_model(t)._forward(feats[t]) for t in self.tasks}
        if not isinstance(inputs, Mapping):
            raise ModelError(f"inputs must be {{task: batch}} or one batch, got {type(inputs).__name__}")
        samples = dict(data_samples or {})
        if mode == "loss":
            return self.loss(inputs, samples)
        if mode == "predict":
            return self.predict(inputs, samples)
        return {t: self.task_model(t)._forward(self.backbone(x, t), samples.get(t)) for t, x in inputs.items()}

    def loss(self, inputs: Mapping[str, Tensor], data_samples: Mapping[str, list]) -> dict[str, Any]:
        """Every task's losses on its own images, keys prefixed ``<task>.``."""
        losses: dict[str, Any] = {}
        for task, x in inputs.items():
            model = self.task_model(task)
            feats = self.backbone(x, task)
            aux = self._aux.collect()
            w = self.loss_weights[task]
            for k, v in model.loss(feats, data_samples[task]).items():
                if "loss" in k and w != 1.0:
                    v = [w * x for x in v] if isinstance(v, (list, tuple)) else w * v
                losses[f"{task}.{k}"] = v
            for k, v in aux.items():
                losses[f"{task}.aux_loss.{k}"] = v
        return losses

    def predict(self, inputs: Mapping[str, Tensor], data_samples: Mapping[str, list]) -> list[Any]:
        """Predictions of each task on its own images (data samples, grouped by task)."""
        out: list[Any] = []
        for task, x in inputs.items():
            out.extend(self.task_model(task).predict(self.backbone(x, task), data_samples.get(task)))
        return out

    def predict_all(self, images: Tensor, data_samples: Mapping[str, list] | None = None,
                    tasks: Sequence[str] | None = None) -> dict[str, list[Any]]:
        """``{task: predictions}`` of the same (already normalised) images through every task;
        the backbone's shared blocks run once. ``data_samples`` (per task) describe the images
        (shapes, scale); by default they are taken as original, un-padded images."""
        tasks = self.tasks if tasks is None else tuple(tasks)
        feats = self.backbone.forward_all(images, tasks)
        given = dict(data_samples or {})
        return {t: self.task_model(t).predict(
            feats[t], given.get(t) or default_samples(self.scopes[t], t, images)) for t in tasks}
