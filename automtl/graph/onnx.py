"""ONNX export of deployable networks, checked in onnxruntime against PyTorch.

A compiled AutoMTL branched model (``MTLModel.compile``) or an exported ViT-MVT subnet goes
through torch's dynamo-based exporter (``torch.export`` underneath); the file is then run in
onnxruntime on the same inputs and every output is compared with PyTorch's, so a written file
is known to compute what the model computes. Needs ``onnx``, ``onnxscript`` and
``onnxruntime`` (the ``dev`` extra installs them).

Example::

    from automtl.graph.onnx import export_onnx
    report = export_onnx(branched, torch.randn(1, 3, 224, 224), "branched.onnx")
    print(report.max_abs_diff)          # {task: largest |onnxruntime - PyTorch|}
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automtl.errors import ExportError

#: default tolerance of the onnxruntime check (float32 kernels differ in summation order)
ATOL = 1e-4


@dataclass(frozen=True)
class OnnxReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduces PyTorch."""

    path: Path
    outputs: tuple[str, ...]
    max_abs_diff: dict[str, float]


def _flatten(out: Any) -> tuple[tuple[str, ...], list[Any]]:
    """Output names and tensors of a model output (a tensor, a tuple/list, or a dict by key)."""
    if isinstance(out, Mapping):
        return tuple(str(k) for k in out), list(out.values())
    if isinstance(out, (tuple, list)):
        return tuple(f"output{i}" for i in range(len(out))), list(out)
    return ("output",), [out]


def export_onnx(model: Any, inputs: Any, path: str | os.PathLike[str], *,
                output_names: Sequence[str] | None = None, atol: float = ATOL) -> OnnxReport:
    """Export ``model`` (eval mode) called on ``inputs`` (a tensor or tuple) to ``path`` and check
    it in onnxruntime; :class:`ExportError` when a dependency is missing, the exporter fails or an
    output differs from PyTorch's by more than ``atol``."""
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {missing} (pip install -e '.[dev]')")
    import numpy as np
    import onnxruntime as ort
    import torch

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    model = model.eval()
    with torch.no_grad():
        names, ref = _flatten(model(*args))
    names = tuple(output_names) if output_names is not None else names
    if len(names) != len(ref):
        raise ExportError(f"output_names: {len(names)} names for {len(ref)} outputs")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(model, args, str(path), dynamo=True, input_names=[f"input{i}" for i in range(len(args))],
                          output_names=list(names), verbose=False)
    except Exception as exc:  # the exporter's own errors name the unsupported operation
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {exc}") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: a.detach().cpu().numpy() for i, a in zip(session.get_inputs(), args)}
    got = session.run(list(names), feed)
    diffs = {}
    for name, r, g in zip(names, ref, got):
        r = r.detach().cpu().numpy()
        if r.shape != g.shape:
            raise ExportError(f"output '{name}' has shape {g.shape} in onnxruntime, {r.shape} in PyTorch",
                              path=str(path))
        diffs[name] = float(np.abs(r - g).max()) if r.size else 0.0
    worst = max(diffs, key=lambda k: diffs[k]) if diffs else None
    if worst is not None and diffs[worst] > atol:
        raise ExportError(f"onnxruntime differs from PyTorch on output '{worst}' by {diffs[worst]:.3g} "
                          f"(> atol {atol:g})", path=str(path))
    return OnnxReport(path, names, diffs)
