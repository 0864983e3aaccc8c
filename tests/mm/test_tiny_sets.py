"""The tiny sets are valid in each library's own on-disk format and carry the true labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from automtl.errors import ConfigError


def test_imagenet_folder_loads_with_mmpretrain(tiny_sets):
    from mmpretrain.datasets import CustomDataset

    root = tiny_sets["imagenet"]
    train = CustomDataset(data_root=str(root), data_prefix="train", ann_file="meta/train.txt",
                          metainfo={"classes": ("sphere", "box", "cylinder")}, pipeline=[])
    val = CustomDataset(data_root=str(root), data_prefix="val", ann_file="meta/val.txt",
                        metainfo={"classes": ("sphere", "box", "cylinder")}, pipeline=[])
    assert len(train) == 8 and len(val) == 4
    for i in range(len(train)):  # the class folder and the listed label agree
        info = train.get_data_info(i)
        assert info["img_path"].split("/")[-2] == ("sphere", "box", "cylinder")[info["gt_label"]]


def test_coco_json_loads_with_pycocotools_and_masks_match_boxes(tiny_sets):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO(str(tiny_sets["coco"] / "annotations" / "instances_val2017.json"))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["box", "cylinder", "sphere"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns and all(a["segmentation"] and a["area"] > 0 for a in anns)
    for a in anns:
        img = coco.loadImgs(a["image_id"])[0]
        rle = mask_utils.frPyObjects(a["segmentation"], img["height"], img["width"])
        x, y, w, h = mask_utils.toBbox(mask_utils.merge(rle))
        bx, by, bw, bh = a["bbox"]
        # polygons run through boundary pixel centres: at most a pixel inside the true box per side
        assert bx <= x <= bx + 1 and by <= y <= by + 1 and bw - 3 <= w <= bw and bh - 3 <= h <= bh


def test_ade20k_layout_loads_with_mmseg(tiny_sets):
    from mmseg.datasets import ADE20KDataset
    from PIL import Image

    ds = ADE20KDataset(data_root=str(tiny_sets["ade20k"]), pipeline=[],
                       data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"))
    assert len(ds) == 4
    label = np.array(Image.open(ds.get_data_info(0)["seg_map_path"]))
    assert set(np.unique(label)) <= {0, 1, 4, 42, 43, 120}  # other, wall, floor, box, column, ball


def test_the_tool_writes_the_sets(tmp_path, capsys):
    import runpy
    import sys

    argv, sys.argv = sys.argv, ["make_tiny_datasets.py", str(tmp_path), "--n-train", "2", "--n-val", "1",
                                "--size", "32"]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path("tools/make_tiny_datasets.py", run_name="__main__")
    finally:
        sys.argv = argv
    assert stop.value.code == 0
    roots = json.loads(capsys.readouterr().out)
    assert (tmp_path / "coco" / "annotations" / "instances_train2017.json").is_file()
    assert set(roots) == {"imagenet", "coco", "ade20k"}


def test_bad_sizes_are_refused(tmp_path):
    from automtl.mm.tiny_sets import make_tiny_datasets

    with pytest.raises(ConfigError, match="n_train"):
        make_tiny_datasets(tmp_path, n_train=0)
