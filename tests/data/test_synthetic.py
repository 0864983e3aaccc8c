"""Synthetic scenes: determinism, exact-label consistency, batch format, speed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automtl.data._render import sample_scene
from automtl.data.synthetic import CLASSES, NUM_CLASSES, TASKS, SyntheticScenes, make_loaders, render_sample
from automtl.errors import ConfigError


def test_deterministic_from_seed_and_split():
    a = render_sample(3, 5, 32)
    b = render_sample(3, 5, 32)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image"], render_sample(4, 5, 32)["image"])
    assert not np.array_equal(a["image"], render_sample(3, 5, 32, split="val")["image"])


@pytest.mark.parametrize("size", [17, (24, 40)])
def test_any_resolution(size):
    s = render_sample(0, 0, size)
    h, w = (size, size) if isinstance(size, int) else size
    assert s["image"].shape == (3, h, w)
    assert s["segment_semantic"].shape == (h, w)
    assert s["depth_zbuffer"].shape == (1, h, w)
    assert s["normal"].shape == (3, h, w)


def test_labels_are_consistent():
    for i in range(6):
        s = render_sample(1, i, 48)
        seg, depth, normal = s["segment_semantic"], s["depth_zbuffer"][0], s["normal"]
        valid = seg >= 0
        assert seg.max() < NUM_CLASSES and seg.min() >= -1
        assert np.array_equal(valid, depth > 0)  # sky is the only undefined region
        norm = np.linalg.norm(normal, axis=0)
        np.testing.assert_allclose(norm[valid], 1.0, atol=1e-6)
        assert np.all(norm[~valid] == 0)
        # Visible surfaces face the ray that sees them (camera frame, z towards viewer).
        sp = sample_scene(np.random.default_rng([1, 0, i]))
        tan_y = math.tan(sp.fov_y / 2)
        u = ((np.arange(48) + 0.5) / 48 * 2 - 1) * tan_y
        ray = np.stack(np.broadcast_arrays(u[None, :], -u[:, None], -np.ones((48, 48))))
        assert np.all((normal * ray).sum(0)[valid] < 1e-9)
        floor = seg == CLASSES.index("floor")
        # The floor is flat: one normal everywhere, and it points up in the image.
        assert np.ptp(normal[:, floor], axis=1).max() < 1e-9
        assert np.all(normal[1][floor] > 0.9)
        # Every change of object between horizontal neighbours is an edge.
        change = seg[:, :-1] != seg[:, 1:]
        assert np.all(s["edge_texture"][0][:, :-1][change])
        sal = s["saliency"][0]
        assert sal.any() and len(np.unique(seg[sal])) == 1
        assert seg[sal][0] in (CLASSES.index("sphere"), CLASSES.index("box"), CLASSES.index("cylinder"))


def test_depth_grows_towards_horizon_on_floor():
    s = render_sample(2, 0, 64)
    seg, depth = s["segment_semantic"], s["depth_zbuffer"][0]
    col = [depth[r, c] for c in range(64) for r in range(63) if seg[r, c] == 0 and seg[r + 1, c] == 0]
    rows = [(depth[r, c], depth[r + 1, c]) for c in range(64) for r in range(63)
            if seg[r, c] == 0 and seg[r + 1, c] == 0]
    assert col and all(upper > lower for upper, lower in rows)


def test_make_loaders_batch_format():
    train, val = make_loaders(TASKS, size=(24, 32), n_train=10, n_val=5, batch_size=4, seed=0)
    assert set(train) == set(val) == set(TASKS)
    assert len(train["normal"]) == 2  # drop_last
    assert sum(len(x) for x, _ in val["normal"]) == 5
    expect = {"segment_semantic": ((4, 24, 32), torch.int64), "depth_zbuffer": ((4, 1, 24, 32), torch.float32),
              "normal": ((4, 3, 24, 32), torch.float32), "edge_texture": ((4, 1, 24, 32), torch.float32),
              "saliency": ((4, 1, 24, 32), torch.float32)}
    for task, (shape, dtype) in expect.items():
        image, target = next(iter(val[task]))
        assert image.shape == (4, 3, 24, 32) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert target.shape == shape and target.dtype == dtype
    # Task loaders of one split index the same scenes.
    a, _ = next(iter(val["normal"]))
    b, _ = next(iter(val["saliency"]))
    assert torch.equal(a, b)
    # The seeded shuffle repeats.
    t1, _ = next(iter(make_loaders(("normal",), 16, 8, 2, 4, seed=1)[0]["normal"]))
    t2, _ = next(iter(make_loaders(("normal",), 16, 8, 2, 4, seed=1)[0]["normal"]))
    assert torch.equal(t1, t2)


def test_dataset_dict_items_and_cache():
    ds = SyntheticScenes(3, 16, seed=0, tasks=("depth_zbuffer",))
    item = ds[1]
    assert set(item) == {"image", "depth_zbuffer"}
    assert ds.arrays(1) is ds.arrays(1)
    with pytest.raises(IndexError):
        ds[3]


def test_bad_arguments():
    with pytest.raises(ConfigError, match="keypoints2d"):
        make_loaders(("keypoints2d",), 16, 4, 2, 2)
    with pytest.raises(ConfigError, match="batch_size"):
        make_loaders(("normal",), 16, 2, 2, 4)
