"""The three released ViT-MVT subnets (DESIGN §3) and their exact backbone parameter counts."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_spaces.vit_mvt import build_space, build_supernet, export_subnet, load_subnet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "nas"

RELEASED = {  # name: (depth, embed, heads, mlp ratios, backbone parameters)
    "tiny": (14, 216, [3, 3, 3, 3, 3, 3, 4, 3, 3, 3, 4, 4, 4, 4],
             [3, 3, 3, 3.5, 3.5, 3.5, 3, 4, 3, 4, 4, 4, 4, 4], 8_605_077),
    "small": (14, 384, [5, 5, 5, 5, 5, 7, 6, 6, 5, 7, 7, 5, 6, 6],
              [4, 4, 4, 3, 3.5, 3.5, 4, 3.5, 3.5, 3.5, 4, 4, 4, 3.5], 25_834_032),
    "base": (16, 576, [9, 10, 9, 9, 9, 9, 9, 10, 9, 10, 10, 9, 9, 9, 9, 9],
             [3.5, 3, 3, 3, 3, 3, 3, 3, 3, 3.5, 4, 3.5, 4, 3, 3.5, 3], 60_836_340),
}


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_subnet_file(name):
    depth, embed, heads, ratios, backbone = RELEASED[name]
    space = build_space(name, tasks=("cls",))
    cand = load_subnet(CONFIGS / f"vit_mvt_{name}" / "subnet.yaml", space)
    assert cand["depth.0"] == depth and cand["embed_channels.0"] == embed
    assert [cand[f"num_heads.{i}"] for i in range(depth)] == heads
    assert [cand[f"mlp_ratio.{i}"] for i in range(depth)] == [float(r) for r in ratios]
    assert space.backbone_params(cand) == backbone
    assert space.count_params(cand)["cls"] == backbone + embed * 1000 + 1000
    with torch.device("meta"):
        net = export_subnet(build_supernet(space), cand)
    head = net.task_model("cls").head
    assert _n(net.task_model("cls")) - _n(head) == backbone


def test_tiny_instantiated_on_cpu():
    """A real (non-meta) exported T model: parameters and a forward at another input size."""
    space = build_space("tiny", tasks=("cls",))
    cand = load_subnet(CONFIGS / "vit_mvt_tiny" / "subnet.yaml", space)
    torch.manual_seed(0)
    sup = build_supernet(space).eval()
    model = export_subnet(sup, cand, task="cls").eval()
    assert _n(model) - _n(model.head) == RELEASED["tiny"][-1]
    x = torch.randn(1, 3, 64, 64)
    sup.set_arch(cand)
    with torch.no_grad():
        torch.testing.assert_close(model(x), sup(x), rtol=0, atol=1e-5)
