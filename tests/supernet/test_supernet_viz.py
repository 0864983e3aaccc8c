"""plot_policy: a PNG of layers × tasks whose cells carry the choice colours."""
from __future__ import annotations

import numpy as np
import pytest
from supernet_helpers import heads, tiny_resnet

from automtl.supernet import MTLModel, Policy
from automtl.viz import COLORS, plot_policy

mpl_image = pytest.importorskip("matplotlib.image")
mpl_colors = pytest.importorskip("matplotlib.colors")


def _has_colour(img: np.ndarray, hex_colour: str) -> bool:
    rgb = np.array(mpl_colors.to_rgb(hex_colour))
    return bool((np.abs(img[..., :3] - rgb).max(-1) < 0.02).sum() > 50)


def test_plot_policy_colours_follow_the_choices(tmp_path) -> None:
    model = MTLModel(tiny_resnet(), heads(16))
    share = plot_policy(Policy.all(model), tmp_path / "share.png")
    mixed_policy = Policy.all(model).replace({("b2.c1.conv", "depth"): "skip", ("stem.conv", "seg"): "specialize"})
    mixed = plot_policy(mixed_policy, tmp_path / "figs" / "mixed.png", title="mixed")
    for path in (share, mixed):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img_share, img_mixed = mpl_image.imread(share), mpl_image.imread(mixed)
    assert _has_colour(img_share, COLORS["share"])
    # cells are large: the mixed picture has far more skip/specialize pixels than the legend alone
    def count(img: np.ndarray, c: str) -> int:
        rgb = np.array(mpl_colors.to_rgb(COLORS[c]))
        return int((np.abs(img[..., :3] - rgb).max(-1) < 0.02).sum())
    for c in ("skip", "specialize"):
        assert count(img_mixed, c) > 3 * max(count(img_share, c), 1)
    assert not list(tmp_path.glob("**/*.png.tmp*"))
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["mixed.png", "share.png"]
