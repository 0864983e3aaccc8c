"""ViT-MVT: an elastic multi-task vision transformer search space with layer-adaptive sharing.

Example::

    import random, torch
    from search_spaces.vit_mvt import build_space, build_supernet, export_subnet

    space = build_space("tiny", tasks=("cls", "seg"))
    cand = space.sample(random.Random(0))
    print(space.count_params(cand))          # {"cls": …, "seg": …, "total": …}
    net = build_supernet(space)
    net.set_arch(cand)
    outs = net.forward_all(torch.randn(2, 3, 224, 224))
    model = export_subnet(net, cand)         # plain multi-task nn.Module

Mixture-of-experts layers (M3ViT): spaces with ``ffn_kinds`` including ``"moe"`` (or the
presets ``"m3vit_small"`` / ``"edge_moe_tiny"``) route each task's tokens to its top-k experts
(:class:`MoEFFN`); :func:`prune_task_experts` keeps one task's experts and
:func:`moe_inference_report` tells what a task's inference touches::

    space = build_space("m3vit_small", tasks=("seg", "depth"), num_outputs={"seg": 40, "depth": 1})
    cand = space.smallest()                  # the published model (MoE in blocks 1, 3, 5, …)
    space.count_params(cand), space.count_active(cand)

Names resolve lazily: ``import search_spaces.vit_mvt`` and the space itself (sampling,
counting, subnet YAML) import neither torch nor the search engine; the supernet modules load
torch on first use.
"""
from __future__ import annotations

from automtl._lazy import lazy_exports

_EXPORTS = {
    "Arch": "._config", "HEAD_DIM": "._config", "LINEARS": "._config", "PRESETS": "._config",
    "SHARED": "._config", "SPECIFIC": "._config", "SpaceConfig": "._config",
    "FFN_KINDS": "._config", "MoESettings": "._config",
    "MoEFFN": "._moe", "TaskRoutedMoE": "._moe",
    "MoEReport": "._moe_prune", "moe_inference_report": "._moe_prune",
    "prune_task_experts": "._moe_prune",
    "export_subnet": "._export", "load_subnet": "._io", "save_subnet": "._io",
    "MultiTaskViTMVT": "._plain", "ViTMVTNet": "._plain", "format_sharing_report": "._report",
    "ViTMVTSpace": "._space", "build_space": "._space",
    "AdaptiveLinear": "._supernet", "ViTMVTSupernet": "._supernet", "build_supernet": "._supernet",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
