"""automtl: automated multi-task learning and multi-task neural architecture search.

Turn any backbone (a Caffe-style ``.prototxt`` or a PyTorch ``nn.Module``) into a
multi-task supernet that learns what to share between tasks::

    from automtl import MTLModel, Trainer, load_prototxt

Top-level names are resolved lazily (PEP 562) so ``import automtl`` stays cheap and the
sub-packages (which import each other) never import in a circle through this file.
"""
from __future__ import annotations

import importlib
from typing import Any

from automtl import errors

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # graph IR and backbone import / export
    "Graph": "automtl.graph", "Node": "automtl.graph", "GraphModule": "automtl.graph",
    "load_prototxt": "automtl.graph", "loads_prototxt": "automtl.graph",
    "from_module": "automtl.graph", "copy_weights": "automtl.graph",
    "to_prototxt": "automtl.graph", "dumps_prototxt": "automtl.graph",
    # supernet
    "MTLModel": "automtl.supernet", "Policy": "automtl.supernet",
    "BranchedModel": "automtl.supernet", "CHOICES": "automtl.supernet",
    "plot_policy": "automtl.viz",
    # training, data, metrics, heads, weighting
    "Trainer": "automtl.train", "run_config": "automtl.train", "load_config": "automtl.train",
    "choose_policy": "automtl.train",
    "make_loaders": "automtl.data", "make_real_loaders": "automtl.data",
    "default_metrics": "automtl.metrics", "delta_m": "automtl.metrics",
    "build_head": "automtl.heads", "build_task_heads": "automtl.heads",
    "build_weighting": "automtl.train.weighting",
    # search
    "EvolutionSearch": "automtl.search", "SearchSpace": "automtl.search",
    "PolicySearchSpace": "automtl.search",
}

__all__ = ["errors", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'automtl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
