"""Train and test OpenMMLab configs (mmpretrain, mmdet, mmseg, and automtl's multi-task model)
through mmengine's ``Runner``: what ``tools/train.py`` / ``tools/test.py`` do for a config that
has ``train_dataloader`` / ``test_dataloader``.

On top of mmengine it adds what automtl promises everywhere: ``--eval`` names mapped onto
mmengine evaluators (ViT-MVT's interface), one data root override that retargets every path,
typed errors for a missing dataset path, an unknown registry type or a checkpoint that does not
fit, checkpoints loaded weights-only and written atomically, one run per work dir.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from automtl.config import load_config, parse_cfg_options
from automtl.errors import CheckpointError, ConfigError, DataError

#: ``--eval`` names → (metric config, the key its main figure reports, the multi-task entry)
EVAL_METRICS: dict[str, tuple[dict[str, Any], str, str]] = {
    "accuracy": ({"type": "mmpretrain.Accuracy", "topk": (1, 5)}, "accuracy/top1", "cls"),
    "bbox": ({"type": "mmdet.CocoMetric", "metric": ["bbox"]}, "coco/bbox_mAP", "det"),
    "segm": ({"type": "mmdet.CocoMetric", "metric": ["segm"]}, "coco/segm_mAP", "det"),
    "mIoU": ({"type": "mmseg.IoUMetric", "iou_metrics": ["mIoU"]}, "mIoU", "seg"),
}
_DATA_SECTIONS = ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator")
_MULTITASK_METRIC = "MultiTaskMetric"


def is_mm_config(cfg: Mapping[str, Any]) -> bool:
    """An mmengine Runner config (OpenMMLab layout): it has data loaders of its own."""
    return "train_dataloader" in cfg or "test_dataloader" in cfg


def load_mm_config(config: str, cfg_options: Iterable[str] | Mapping[str, Any] | None = None) -> Any:
    """The config with ``cfg_options`` applied; a changed ``*data_root`` variable is carried into
    every dataset and evaluator path that started with its old value."""
    from automtl.mm.register import PART_MODULES  # noqa: F401  (registers automtl parts, checks the extra)

    cfg = load_config(config)
    overrides = parse_cfg_options(cfg_options)
    for key in [k for k in overrides if "." not in k and k.endswith("data_root")]:
        old, new = cfg.get(key), str(overrides.pop(key))
        if not isinstance(old, str):
            raise ConfigError("the config has no such data root variable; its data roots: "
                              f"{[k for k in cfg if str(k).endswith('data_root')]}", key=key, path=config)
        if old.endswith("/") and not new.endswith("/"):
            new += "/"  # configs join data_root + "annotations/…" as strings
        for section in _DATA_SECTIONS:
            if section in cfg:
                cfg[section] = _retarget(cfg[section], old, new)
        cfg[key] = new
    if overrides:
        try:
            cfg.merge_from_dict(overrides)
        except Exception as exc:  # merging a dict into a scalar and the like
            raise ConfigError(f"cannot apply --cfg-options {overrides}: {exc}", path=config) from exc
    return cfg


def _retarget(node: Any, old: str, new: str) -> Any:
    if isinstance(node, str):
        return new + node[len(old):] if node.startswith(old) else node
    if isinstance(node, dict):  # dict or mmengine ConfigDict: keep the type
        out = copy.copy(node)
        for k, v in node.items():
            out[k] = _retarget(v, old, new)
        return out
    if isinstance(node, list):
        return [_retarget(v, old, new) for v in node]
    if isinstance(node, tuple):
        return tuple(_retarget(v, old, new) for v in node)
    return node


# ------------------------------------------------------------------ data paths
def _dataset_paths(ds: Mapping[str, Any]) -> Iterable[tuple[str, Path]]:
    root = Path(str(ds.get("data_root") or ""))
    if ds.get("data_root"):
        yield "data_root", root
    if ds.get("ann_file"):
        yield "ann_file", root / str(ds["ann_file"])
    prefix = ds.get("data_prefix")
    for name, value in (prefix.items() if isinstance(prefix, Mapping) else [("data_prefix", prefix)]):
        if isinstance(value, str) and value:
            yield f"data_prefix.{name}", root / value


def _datasets(node: Any, where: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Every dataset dict inside a loader's ``dataset`` (wrappers' ``dataset`` / ``datasets``)."""
    if isinstance(node, Mapping):
        if "data_root" in node or "ann_file" in node or "data_prefix" in node:
            yield where, node
        for key in ("dataset", "datasets"):
            if key in node:
                yield from _datasets(node[key], f"{where}.{key}")
        if where.endswith("datasets"):
            for k, v in node.items():
                yield from _datasets(v, f"{where}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _datasets(v, f"{where}[{i}]")


def check_data_paths(cfg: Mapping[str, Any], sections: Sequence[str], *, path: str) -> None:
    """:class:`DataError` naming the first dataset / annotation path the run needs that is missing."""
    for section in sections:
        node = cfg.get(section)
        if node is None:
            continue
        found = list(_datasets(node.get("dataset"), f"{section}.dataset")) if "loader" in section else []
        for where, ds in found:
            for name, p in _dataset_paths(ds):
                if not p.exists():
                    raise DataError(f"{path}: {where}.{name}: {p} does not exist (expected layout: see the "
                                    "config's comments; tiny sets: tools/make_tiny_datasets.py; point the "
                                    "config at your copy with --cfg-options data_root=DIR)")
        metrics = node if isinstance(node, (list, tuple)) else [node] if "evaluator" in section else []
        for metric in metrics:
            for m in _metric_dicts(metric):
                ann = m.get("ann_file")
                if isinstance(ann, str) and ann and not Path(ann).exists():
                    raise DataError(f"{path}: {section}.ann_file: {ann} does not exist")


def _metric_dicts(metric: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(metric, Mapping):
        yield metric
        inner = metric.get("metrics")
        if isinstance(inner, Mapping):
            for v in inner.values():
                yield from _metric_dicts(v)
        elif isinstance(inner, (list, tuple)):
            for v in inner:
                yield from _metric_dicts(v)
    elif isinstance(metric, (list, tuple)):
        for v in metric:
            yield from _metric_dicts(v)


# ------------------------------------------------------------------ --eval
def eval_evaluator(cfg: Mapping[str, Any], evals: Sequence[str]) -> Any:
    """The test evaluator for ``--eval`` names (unknown names refused, naming the known ones)."""
    unknown = [e for e in evals if e not in EVAL_METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; --eval takes {sorted(EVAL_METRICS)}", key="--eval")
    current = cfg.get("test_evaluator")
    if isinstance(current, Mapping) and str(current.get("type", "")).endswith(_MULTITASK_METRIC):
        wanted = {EVAL_METRICS[e][2] for e in evals}
        kept = {t: m for t, m in current["metrics"].items() if t in wanted}
        if not kept:
            raise ConfigError(f"--eval {list(evals)} names no task of this multi-task model "
                              f"({sorted(current['metrics'])})", key="--eval")
        return {**copy.deepcopy(dict(current)), "metrics": kept}
    metrics: list[dict[str, Any]] = []
    coco = [e for e in evals if e in ("bbox", "segm")]
    for e in evals:
        if e in ("bbox", "segm"):
            if e == coco[0]:
                metrics.append({**EVAL_METRICS[e][0], "metric": coco, "ann_file": _coco_ann_file(cfg)})
        elif e == "accuracy":
            metrics.append({**EVAL_METRICS[e][0], "topk": _topk(cfg)})
        else:
            metrics.append(dict(EVAL_METRICS[e][0]))
    return metrics[0] if len(metrics) == 1 else metrics


def _topk(cfg: Mapping[str, Any]) -> tuple[int, ...]:
    """The config's own Accuracy ``topk``, else (1, 5) — (1,) for fewer than 5 classes."""
    for m in _metric_dicts(cfg.get("test_evaluator")):
        if str(m.get("type", "")).endswith("Accuracy") and m.get("topk"):
            topk = m["topk"]
            return tuple(topk) if isinstance(topk, (list, tuple)) else (int(topk),)
    classes = ((cfg.get("model") or {}).get("head") or {}).get("num_classes")
    return (1,) if isinstance(classes, int) and classes < 5 else (1, 5)


def _coco_ann_file(cfg: Mapping[str, Any]) -> str:
    for m in _metric_dicts(cfg.get("test_evaluator")):
        if m.get("ann_file"):
            return str(m["ann_file"])
    for _, ds in _datasets((cfg.get("test_dataloader") or {}).get("dataset"), "test_dataloader.dataset"):
        if ds.get("ann_file"):
            return str(Path(str(ds.get("data_root") or "")) / str(ds["ann_file"]))
    raise ConfigError("--eval bbox/segm need a COCO annotation file: the config's test dataset has no "
                      "ann_file", key="--eval")


# ------------------------------------------------------------------ running
def _install_io() -> None:
    """Weights-only loading of mmengine checkpoints and atomic writes for every local file."""
    from mmengine.fileio import register_backend
    from mmengine.fileio.backends import LocalBackend

    import automtl.io
    from automtl.mm.safe_load import allow_mmengine_checkpoints

    class AtomicLocalBackend(LocalBackend):
        """mmengine's local file backend writing through a temporary file and a rename."""

        def put(self, obj: bytes, filepath: str | Path) -> None:
            automtl.io.atomic_write_bytes(filepath, obj)

    register_backend("local", AtomicLocalBackend, force=True, prefixes="")
    allow_mmengine_checkpoints()


def _build_runner(cfg: Any, path: str) -> Any:
    from mmengine.runner import Runner

    # mmengine formats the config with yapf each time it logs or dumps it (seconds per call for a
    # detector config, several calls per run); the unformatted text is the same valid Python
    object.__setattr__(cfg, "_format_python_code", False)
    try:
        return Runner.from_cfg(cfg)
    except KeyError as exc:
        text = str(exc.args[0]) if exc.args else str(exc)
        if "is not in the" not in text:
            raise
        from automtl.registry import MODELS, known

        raise ConfigError(f"unknown registry type: {text} automtl's OpenMMLab parts: {known(MODELS)} "
                          "(configs import them with custom_imports=dict(imports=['automtl.mm.register']))",
                          path=path) from exc


def attach_auxiliary_losses(model: Any) -> int:
    """Make a single-task OpenMMLab model's ``loss()`` also return the auxiliary losses its
    sub-modules report (``auxiliary_losses()``, e.g. M3ViT's MoE balance losses) as
    ``aux_loss.<name>`` — mmengine sums every ``*loss*`` entry. Returns how many modules report
    them (0: the model is left as it is). The multi-task model collects its own."""
    from automtl.train.steps import AuxiliaryLosses, auxiliary_loss_modules

    net = model.module if hasattr(model, "module") else model
    modules = [m for m in auxiliary_loss_modules(net) if m is not net]
    if not modules or getattr(net, "collects_auxiliary_losses", False):
        return 0
    collector = AuxiliaryLosses(modules)
    inner_loss = net.loss

    def loss(*args: Any, **kwargs: Any) -> dict[str, Any]:
        losses = dict(inner_loss(*args, **kwargs))
        losses.update({f"aux_loss.{k}": v for k, v in collector.collect().items()})
        return losses

    net.loss = loss
    return len(modules)


def _common(cfg: Any, *, work_dir: str, launcher: str, seed: int | None) -> None:
    if launcher not in ("none", "pytorch", "slurm", "mpi"):
        raise ConfigError("unknown launcher; use none, pytorch, slurm or mpi", key="--launcher", value=launcher)
    cfg.work_dir = work_dir
    cfg.launcher = launcher
    if launcher != "none":
        import torch

        if not torch.cuda.is_available() and launcher == "pytorch":
            # mmengine's pytorch launcher pins a CUDA device; on CPU the processes join over gloo
            # here, and the Runner finds the process group already set up
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="gloo")
            if cfg.get("model_wrapper_cfg") is None:  # DDP over CPU modules takes no device ids
                cfg.model_wrapper_cfg = {"type": "MMDistributedDataParallel", "device_ids": None,
                                         "broadcast_buffers": False,
                                         "find_unused_parameters": cfg.get("find_unused_parameters", False)}
    if seed is not None:
        cfg.randomness = {**dict(cfg.get("randomness") or {}), "seed": seed}


def train_mm(config: str, *, work_dir: str, resume: bool = False, amp: bool = False, launcher: str = "none",
             cfg_options: Iterable[str] | Mapping[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Train an OpenMMLab config with mmengine's Runner; returns the work dir, the last
    checkpoint and the last validation metrics."""
    import torch

    from automtl.train.distributed import lock_main_work_dir

    cfg = load_mm_config(config, cfg_options)
    _common(cfg, work_dir=work_dir, launcher=launcher, seed=seed)
    if amp:
        if not torch.cuda.is_available():
            raise ConfigError("--amp needs a CUDA device (mmengine's AmpOptimWrapper refuses the CPU)",
                              key="--amp")
        cfg.optim_wrapper = {**dict(cfg.optim_wrapper), "type": "AmpOptimWrapper", "loss_scale": "dynamic"}
    cfg.resume = bool(resume)
    check_data_paths(cfg, ("train_dataloader", "val_dataloader", "val_evaluator"), path=config)
    _install_io()
    with lock_main_work_dir(work_dir, purpose="tools/train.py (OpenMMLab)"):
        runner = _build_runner(cfg, config)
        attach_auxiliary_losses(runner.model)
        runner.train()
        last = Path(work_dir) / "last_checkpoint"
        metrics = runner.message_hub.log_scalars
        val = {k[4:]: float(v.current()) for k, v in metrics.items() if k.startswith("val/")}
    return {"work_dir": work_dir, "checkpoint": last.read_text().strip() if last.is_file() else None,
            "val": val}


def test_mm(config: str, checkpoint: str, *, work_dir: str, evals: Sequence[str] | None = None,
            out: str | None = None, show_dir: str | None = None, launcher: str = "none",
            cfg_options: Iterable[str] | Mapping[str, Any] | None = None, tta: bool = False,
            seed: int | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the config's test set; ``evals`` picks the metrics (``--eval``).
    Returns ``{metric key: value}`` (finite floats where the metric reports numbers)."""
    cfg = load_mm_config(config, cfg_options)
    _common(cfg, work_dir=work_dir, launcher=launcher, seed=seed)
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    if evals:
        cfg.test_evaluator = eval_evaluator(cfg, evals)
    if tta:
        if "tta_model" not in cfg or "tta_pipeline" not in cfg:
            raise ConfigError("--tta: this config defines no tta_model / tta_pipeline", path=config)
        cfg.model = {**dict(cfg.tta_model), "module": cfg.model}
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    if show_dir:
        _show(cfg, show_dir)
    if out:
        if out.endswith((".pkl", ".pickle")):
            cfg.test_evaluator = [*_as_list(cfg.test_evaluator), {"type": "DumpResults", "out_file_path": out}]
    check_data_paths(cfg, ("test_dataloader", "test_evaluator"), path=config)
    _install_io()
    cfg.load_from = None
    runner = _build_runner(cfg, config)
    load_weights(runner.model, checkpoint)
    metrics = {k: _number(v) for k, v in runner.test().items()}
    if out and not out.endswith((".pkl", ".pickle")):
        from automtl.io import atomic_write_text

        atomic_write_text(out, json.dumps(metrics, indent=2) + "\n")
    return metrics


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _number(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _show(cfg: Any, show_dir: str) -> None:
    hooks = cfg.get("default_hooks") or {}
    vis = hooks.get("visualization")
    if vis is None:
        raise ConfigError("--show-dir: this config has no visualization hook", key="--show-dir")
    kind = str(vis.get("type", ""))
    if "Seg" in kind:
        vis["draw"] = True
        cfg.visualizer["save_dir"] = show_dir
    elif "Det" in kind:
        vis["draw"] = True
        vis["test_out_dir"] = str(Path(show_dir).resolve())
    else:  # mmpretrain's VisualizationHook
        vis["enable"] = True
        vis["out_dir"] = str(Path(show_dir).resolve())


def load_weights(model: Any, checkpoint: str) -> None:
    """Load ``checkpoint`` (an mmengine checkpoint or a bare state dict) into ``model`` after
    checking every key and shape fits (:class:`CheckpointError` naming the differences)."""
    from automtl.io import check_state_dict
    from automtl.mm.safe_load import read_weights

    state = read_weights(checkpoint)
    net = model.module if hasattr(model, "module") else model
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    check_state_dict(net.state_dict(), state, checkpoint)
    net.load_state_dict(state)
