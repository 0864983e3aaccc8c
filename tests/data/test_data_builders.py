"""The real sets as config data builders (``build_data(dict(type=NAME, data_root=...))``): batches,
default evaluation splits, augmentation, and errors that name the key or the path."""
from __future__ import annotations

import json

import pytest
import torch
from data_fixtures import WRITERS

from automtl.data import REAL_SETS, TaskView, build_data, make_loaders, make_real_loaders
from automtl.errors import ConfigError, DataError

SETS = {  # builder name → (tasks, segmentation classes)
    "CityScapes": (["segment_semantic", "depth_zbuffer"], 19),
    "NYUv2": (["segment_semantic", "normal", "depth_zbuffer"], 40),
    "Taskonomy": (["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"], 17),
    "NYUD": (["segment_semantic", "depth_zbuffer", "normal", "edge_texture"], 40),
    "PascalContext": (["segment_semantic", "human_parts", "saliency", "normal", "edge_texture"], 21),
}
CHANNELS = {"depth_zbuffer": 1, "normal": 3, "keypoints2d": 1, "edge_texture": 1, "saliency": 1}


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_real_set_builds_from_a_config(tmp_path, name):
    WRITERS[name](tmp_path, n=3, hw=(10, 12))
    tasks, classes = SETS[name]
    cls = next(c for c in REAL_SETS.values() if c.__name__ == name)
    assert cls.num_classes == classes and set(cls.tasks_available) == set(tasks)
    train, val = build_data(dict(type=name, data_root=str(tmp_path), batch_size=2, crop=8, scale=(0.5, 1.5)),
                            tasks, seed=3)
    assert set(train) == set(val) == set(tasks)
    for task in tasks:
        assert isinstance(train[task].dataset, TaskView) and isinstance(val[task].dataset, TaskView)
        image, target = next(iter(train[task]))
        assert image.shape == (2, 3, 8, 8) and image.dtype == torch.float32
        assert target.shape[-2:] == (8, 8) and target.shape[0] == 2
        if task in CHANNELS:
            assert target.shape[1] == CHANNELS[task] and target.dtype == torch.float32
        else:
            assert target.dtype == torch.int64 and int(target.max()) < classes
        image, target = next(iter(val[task]))  # validation: native size, not augmented
        assert image.shape == (2, 3, 10, 12) and target.shape[-2:] == (10, 12)
    assert len(train[tasks[0]]) == 1 and sum(len(x) for x, _ in val[tasks[0]]) == 3


def test_train_shuffle_is_seeded_and_shared_with_synthetic(tmp_path):
    WRITERS["NYUD"](tmp_path, n=6, hw=(4, 4))

    def order(seed):
        train, _ = build_data(dict(type="NYUD", data_root=str(tmp_path), batch_size=1, flip=False), ["depth_zbuffer"],
                              seed=seed)
        return [float(t.sum()) for _, t in train["depth_zbuffer"]]

    assert order(0) == order(0) and order(0) != order(1)
    synthetic, _ = make_loaders(("depth_zbuffer",), size=8, n_train=4, n_val=2, batch_size=2)
    assert type(synthetic["depth_zbuffer"].dataset) is TaskView


def test_augmentation_pads_with_invalid_values(tmp_path):
    WRITERS["NYUv2"](tmp_path, n=2, hw=(4, 6))
    torch.manual_seed(0)
    train, _ = build_data(dict(type="NYUv2", data_root=str(tmp_path), batch_size=2, crop=(12, 14)),
                          ["segment_semantic", "normal", "depth_zbuffer"])
    _, seg = next(iter(train["segment_semantic"]))
    _, normal = next(iter(train["normal"]))
    image, depth = next(iter(train["depth_zbuffer"]))
    assert seg.shape == (2, 12, 14) and (seg[:, 0] == -1).all() and (seg[:, 4:8, 4:10] >= -1).all()
    assert (normal[:, :, 0] == 0).all() and (depth[:, :, 0] == 0).all() and (image[:, :, 0] == 0).all()
    assert (seg >= 0).sum() > 0


def test_default_eval_splits_follow_autmtl(tmp_path):
    nyu, city, tasko, tasko_no_small = (tmp_path / d for d in ("nyu", "city", "tasko", "tasko2"))
    WRITERS["NYUv2"](nyu, n=2)  # train, train1, train2, test: no val
    _, val = make_real_loaders("nyuv2", nyu, batch_size=1)
    assert val["normal"].dataset.dataset.split == "test"
    WRITERS["CityScapes"](city, n=2)
    _, val = make_real_loaders("cityscapes", city, batch_size=1)
    assert val["depth_zbuffer"].dataset.dataset.split == "test"
    WRITERS["Taskonomy"](tasko, n=2)
    _, val = make_real_loaders("taskonomy", tasko, ["edge_texture"], batch_size=1)
    assert val["edge_texture"].dataset.dataset.split == "test_small"
    WRITERS["Taskonomy"](tasko_no_small, n=2, splits=("train", "test"))
    _, val = make_real_loaders("taskonomy", tasko_no_small, ["edge_texture"], batch_size=1)
    assert val["edge_texture"].dataset.dataset.split == "test"


def test_a_split_the_index_lacks_names_the_available_ones(tmp_path):
    WRITERS["NYUv2"](tmp_path / "nyu", n=1)
    with pytest.raises(DataError, match=r"no split 'val' \(it has \['test', 'train', 'train1', 'train2'\]\)"):
        build_data(dict(type="NYUv2", data_root=str(tmp_path / "nyu"), batch_size=1, val_split="val"),
                   ["depth_zbuffer"])
    WRITERS["NYUD"](tmp_path / "nyud", n=1, splits=("train", "test"))
    with pytest.raises(DataError, match=r"gt_sets/val\.txt.*no split 'val'.*\['test', 'train'\]"):
        build_data(dict(type="NYUD", data_root=str(tmp_path / "nyud"), batch_size=1), ["depth_zbuffer"])


def test_config_errors_name_the_key(tmp_path):
    WRITERS["CityScapes"](tmp_path, n=2)
    tasks = ["segment_semantic"]
    with pytest.raises(ConfigError, match=r"key 'data\.bogus'.*accepted: .*data_root"):
        build_data(dict(type="CityScapes", data_root=str(tmp_path), bogus=1), tasks)
    with pytest.raises(ConfigError, match=r"key 'data\.type'.*'NYUv3'.*NYUv2"):
        build_data(dict(type="NYUv3", data_root=str(tmp_path)), tasks)
    with pytest.raises(ConfigError, match=r"key 'data.data_root': missing key"):
        build_data(dict(type="CityScapes"), tasks)
    with pytest.raises(ConfigError, match=r"key 'tasks'.*normal"):
        build_data(dict(type="CityScapes", data_root=str(tmp_path)), ["normal"])
    with pytest.raises(ConfigError, match=r"key 'data.batch_size'.*2 samples"):
        build_data(dict(type="CityScapes", data_root=str(tmp_path), batch_size=3), tasks)
    with pytest.raises(ConfigError, match=r"key 'data.crop'"):
        build_data(dict(type="CityScapes", data_root=str(tmp_path), crop=(0, 4)), tasks)
    with pytest.raises(ConfigError, match=r"key 'data.scale'"):
        build_data(dict(type="CityScapes", data_root=str(tmp_path), scale=(1.5, 0.5)), tasks)
    with pytest.raises(ConfigError, match=r"key 'dataset'.*nyuv2"):
        make_real_loaders("nyu", tmp_path)


@pytest.mark.parametrize("name", sorted(SETS))
def test_missing_root_and_wrong_layout_name_the_path(tmp_path, name):
    tasks = SETS[name][0][:1]
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"missing data root: {missing}"):
        build_data(dict(type=name, data_root=str(missing)), tasks)
    (tmp_path / "empty").mkdir()
    index = {"CityScapes": "cityscape.json", "NYUv2": "nyu_v2_3task.json", "Taskonomy": "taskonomy.json",
             "NYUD": "gt_sets", "PascalContext": "ImageSets/Context"}[name]
    with pytest.raises(DataError, match=str(tmp_path / "empty" / index)):
        build_data(dict(type=name, data_root=str(tmp_path / "empty")), tasks)


def test_wrong_layout_names_the_first_missing_sample_file(tmp_path):
    WRITERS["Taskonomy"](tmp_path, n=2)
    row = json.loads((tmp_path / "taskonomy.json").read_text())["train"][0]
    (tmp_path / "train" / row[3]).unlink()  # depth of the first train sample
    with pytest.raises(DataError, match="missing file: " + str(tmp_path / "train" / row[3])):
        build_data(dict(type="Taskonomy", data_root=str(tmp_path), batch_size=1), ["depth_zbuffer"])
    with pytest.raises(DataError, match="train_0_depth_zbuffer"):  # normals are masked by depth
        build_data(dict(type="Taskonomy", data_root=str(tmp_path), batch_size=1), ["normal"])
    build_data(dict(type="Taskonomy", data_root=str(tmp_path), batch_size=1), ["edge_texture"])
