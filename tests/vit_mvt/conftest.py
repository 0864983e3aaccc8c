"""Fixtures of the ViT-MVT tests: a micro space (64×64 inputs) small enough for CPU CI."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
try:  # an editable install made before search_spaces/ existed does not map it
    import search_spaces  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the package was installed
    sys.path.insert(0, str(ROOT))

from search_spaces.vit_mvt import SpaceConfig, ViTMVTSpace, build_space, build_supernet  # noqa: E402

MICRO = SpaceConfig("micro", depths=(2, 3), embeds=(32, 48), heads=(1, 2), mlp_ratios=(1.0, 2.0),
                    img_size=64)


@pytest.fixture(scope="session")
def micro() -> ViTMVTSpace:
    """Two tasks, tiny widths, 4×4 token grid."""
    return build_space(MICRO, tasks=("cls", "seg"), num_outputs={"cls": 10, "seg": 5})


@pytest.fixture()
def micro_net(micro: ViTMVTSpace):
    """A freshly initialised micro supernet in eval mode."""
    torch.manual_seed(0)
    return build_supernet(micro).eval()
