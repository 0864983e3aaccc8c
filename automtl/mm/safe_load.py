"""Load OpenMMLab checkpoints under torch's ``weights_only`` default, without turning safety off.

mmengine checkpoints pickle a few objects besides tensors: the message hub's
``HistoryBuffer`` (which pickles its statistics methods through ``builtins.getattr``) and
numpy arrays, dtypes and scalars. :func:`allow_mmengine_checkpoints` adds exactly those to
torch's safe globals, under numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) paths;
any other global is still refused by torch with a message naming it. Nothing here sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.
"""
from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automtl.errors import CheckpointError

_INSTALLED = False


def mmengine_checkpoint_globals() -> list[Any]:
    """The exact globals mmengine checkpoints contain, as ``add_safe_globals`` entries."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    entries: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, builtins.getattr]
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    entries += [c for c in dtype_classes if isinstance(c, type)]
    for func in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, func)
        entries += [(fn, f"numpy.core.multiarray.{func}"), (fn, f"numpy._core.multiarray.{func}")]
    return entries


def allow_mmengine_checkpoints() -> None:
    """Allow-list :func:`mmengine_checkpoint_globals` in torch's weights-only unpickler (once)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import torch

    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _INSTALLED = True


def read_weights(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a checkpoint file, read weights-only (automtl, mmengine or plain state dict)."""
    from torch import Tensor

    from automtl.io import safe_load

    allow_mmengine_checkpoints()
    obj: Any = safe_load(Path(checkpoint))
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not state:
        raise CheckpointError(f"{checkpoint}: holds no tensors (expected a state dict, or one under "
                              "'state_dict' / 'model')")
    return state
