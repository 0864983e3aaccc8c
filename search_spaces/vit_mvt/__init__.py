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
"""
from __future__ import annotations

from ._config import HEAD_DIM, LINEARS, SHARED, SPACES, SPECIFIC, Arch, SpaceConfig
from ._export import export_subnet
from ._io import load_subnet, save_subnet
from ._plain import MultiTaskViTMVT, ViTMVTNet
from ._report import format_sharing_report
from ._space import ViTMVTSpace, build_space
from ._supernet import AdaptiveLinear, ViTMVTSupernet, build_supernet

__all__ = ["Arch", "AdaptiveLinear", "HEAD_DIM", "LINEARS", "MultiTaskViTMVT", "SHARED", "SPACES",
           "SPECIFIC", "SpaceConfig", "ViTMVTNet", "ViTMVTSpace", "ViTMVTSupernet", "build_space",
           "build_supernet", "export_subnet", "format_sharing_report", "load_subnet", "save_subnet"]
