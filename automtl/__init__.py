"""automtl: automated multi-task learning and multi-task neural architecture search.

Turn any backbone (a Caffe-style ``.prototxt`` or a PyTorch ``nn.Module``) into a
multi-task supernet that learns what to share between tasks::

    from automtl import MTLModel, Trainer, load_prototxt

Top-level names are resolved lazily (PEP 562) so ``import automtl`` stays cheap; the
sub-packages import one way (errors → io, registry, config → graph → … → search → cli) and
never through this file.
"""
from __future__ import annotations

from automtl import errors
from automtl._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    # graph IR and backbone import / export
    "Graph": "automtl.graph", "Node": "automtl.graph", "GraphModule": "automtl.graph",
    "load_prototxt": "automtl.graph", "loads_prototxt": "automtl.graph",
    "from_module": "automtl.graph", "copy_weights": "automtl.graph",
    "to_prototxt": "automtl.graph", "dumps_prototxt": "automtl.graph",
    "build_backbone": "automtl.backbones",
    # supernet
    "MTLModel": "automtl.supernet", "Policy": "automtl.supernet",
    "BranchedModel": "automtl.supernet", "CHOICES": "automtl.supernet",
    "plot_policy": "automtl.viz",
    # training, data, metrics, heads, weighting
    "Trainer": "automtl.train", "choose_policy": "automtl.train",
    "train_supernet": "automtl.train.supernet",
    "make_loaders": "automtl.data", "make_real_loaders": "automtl.data",
    "build_data": "automtl.data",
    "default_metrics": "automtl.metrics", "delta_m": "automtl.metrics",
    "build_head": "automtl.heads", "build_task_heads": "automtl.heads",
    "build_weighting": "automtl.train.weighting",
    # configs and the config runners of the command line
    "load_config": "automtl.config", "run_config": "automtl.cli.run_automtl",
    # search spaces and search
    "SearchSpace": "automtl.spaces", "SupernetSpace": "automtl.spaces",
    "PolicySearchSpace": "automtl.spaces", "EvolutionSearch": "automtl.search",
}

__all__ = ["errors", "__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
