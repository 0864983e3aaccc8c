"""Real-set readers on tiny fixtures in each published layout (writers in data_fixtures.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_fixtures import H, W, npy, png, rgb, write_cityscapes, write_mat
from PIL import Image

from automtl.data.real import NYUD, CityScapes, NYUv2, PascalContext, Taskonomy, make_real_loaders
from automtl.errors import ConfigError, DataError


def test_cityscapes_layout_and_batches(tmp_path):
    write_cityscapes(tmp_path)
    ds = CityScapes(tmp_path, "train")
    item = ds[1]
    image = np.load(tmp_path / "train" / "image" / "1.npy")
    assert item["image"].shape == (3, H, W)
    assert torch.allclose(item["image"], torch.from_numpy(image).permute(2, 0, 1))
    seg = item["segment_semantic"]
    assert seg.dtype == torch.int64 and (seg[0] == -1).all()
    assert torch.equal(seg[1:], torch.from_numpy(np.load(tmp_path / "train" / "label_19" / "1.npy"))[1:])
    depth = item["depth_zbuffer"]
    expected = np.load(tmp_path / "train" / "depth" / "1.npy")[..., 0]
    assert depth.shape == (1, H, W) and depth[0, 1, 1] == 0 and depth[0, 0, 0] == pytest.approx(expected[0, 0])
    train, val = make_real_loaders("cityscapes", tmp_path, batch_size=2, size=(3, 4))
    image, target = next(iter(val["segment_semantic"]))
    assert image.shape == (2, 3, 3, 4) and target.shape == (2, 3, 4) and target.dtype == torch.int64
    image, target = next(iter(train["depth_zbuffer"]))
    assert target.shape == (2, 1, 3, 4)


def test_wrong_layout_names_the_first_missing_file(tmp_path):
    with pytest.raises(DataError, match="cityscape.json"):
        CityScapes(tmp_path, "train")
    write_cityscapes(tmp_path)
    (tmp_path / "train" / "depth" / "0.npy").unlink()
    with pytest.raises(DataError, match=r"train/depth/0\.npy"):
        CityScapes(tmp_path, "train")
    CityScapes(tmp_path, "train", ("segment_semantic",))  # that task does not need the file
    (tmp_path / "train" / "depth" / "1.npy").unlink()
    with pytest.raises(DataError, match="has no split 'val'"):
        CityScapes(tmp_path, "val")
    with pytest.raises(ConfigError, match="normal"):
        CityScapes(tmp_path, "test", ("normal",))
    with pytest.raises(DataError, match="missing data root"):
        NYUD(tmp_path / "nope", "train")


def test_nyuv2_autmtl_layout(tmp_path):
    seg = np.full((H, W), 5, dtype=np.uint8)
    seg[0, 0] = 255
    normal = np.full((H, W, 3), 128, dtype=np.uint8)
    normal[..., 2] = 255  # largest channel 255 = invalid in AutoMTL's convention
    normal[2:, :, 2] = 254
    normal[2:, :, :2] = 127
    png(tmp_path / "img" / "0.png", rgb(0))
    png(tmp_path / "seg" / "0.png", seg)
    png(tmp_path / "sn" / "0.png", normal)
    npy(tmp_path / "depth" / "0.npy", np.full((H, W), 2.5, dtype=np.float32))
    (tmp_path / "nyu_v2_3task.json").write_text(json.dumps({"test": [["img/0.png", "seg/0.png", "sn/0.png",
                                                                      "depth/0.npy"]]}))
    item = NYUv2(tmp_path, "test")[0]
    assert item["segment_semantic"][0, 0] == -1 and item["segment_semantic"][1, 1] == 5
    n = item["normal"]
    assert (n[:, :2] == 0).all()
    assert torch.allclose(n[:, 3, 3], torch.tensor([0.0, 0.0, 1.0]), atol=0.01)
    assert torch.allclose(n.norm(dim=0)[2:], torch.tensor(1.0))
    assert torch.equal(item["image"], torch.from_numpy(rgb(0)).permute(2, 0, 1).float() / 255)


def test_nyuv2_normal_decodings_on_known_pixels(tmp_path):
    """The standard decoding reads R, G, B as ``2v/255 - 1``; AutoMTL's reads the file as
    OpenCV does (B, G, R) and scales the raw 0-255 vector to unit length."""
    normal = np.zeros((H, W, 3), dtype=np.uint8)  # RGB as stored in the PNG
    normal[0, 0] = (0, 0, 128)
    normal[0, 1] = (30, 40, 0)
    normal[0, 2] = (10, 255, 20)  # a channel at 255: invalid in both
    png(tmp_path / "img" / "0.png", rgb(0))
    png(tmp_path / "seg" / "0.png", np.zeros((H, W), dtype=np.uint8))
    png(tmp_path / "sn" / "0.png", normal)
    npy(tmp_path / "depth" / "0.npy", np.ones((H, W), dtype=np.float32))
    row = ["img/0.png", "seg/0.png", "sn/0.png", "depth/0.npy"]
    (tmp_path / "nyu_v2_3task.json").write_text(json.dumps({"train": [row], "test": [row]}))
    standard = NYUv2(tmp_path, "test", ("normal",))[0]["normal"]
    automtl = NYUv2(tmp_path, "test", ("normal",), encoding="automtl")[0]["normal"]
    assert torch.allclose(standard[:, 0, 0], torch.tensor([-0.707104, -0.707104, 0.002773]), atol=1e-6)
    assert torch.allclose(standard[:, 0, 1], torch.tensor([-0.533347, -0.478644, -0.697453]), atol=1e-6)
    assert torch.equal(automtl[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(automtl[:, 0, 1], torch.tensor([0.0, 0.8, 0.6]), atol=1e-7)
    assert (standard[:, 0, 2] == 0).all() and (automtl[:, 0, 2] == 0).all()
    with pytest.raises(ConfigError, match=r"encoding.*\['standard', 'automtl'\]"):
        NYUv2(tmp_path, "test", encoding="opencv")
    with pytest.raises(ConfigError, match=r"encoding.*\['standard'\]"):
        NYUD(tmp_path, "test", encoding="automtl")
    _, val = make_real_loaders("nyuv2", tmp_path, ["normal"], batch_size=1, encoding="automtl")
    assert torch.equal(next(iter(val["normal"]))[1][0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_taskonomy_autmtl_layout(tmp_path):
    base = tmp_path / "test"
    seg = np.zeros((H, W), dtype=np.uint8)
    seg[3:] = 4
    depth = np.full((H, W), 1024, dtype=np.uint16)
    depth[0] = 65535
    kp = np.full((H, W), int(0.0025 * 2 ** 16), dtype=np.uint16)
    edge = np.full((H, W), int(0.16 * 2 ** 16), dtype=np.uint16)
    normal = np.zeros((H, W, 3), dtype=np.uint8)
    normal[..., 0] = 255
    normal[..., 1:] = 128
    png(base / "s" / "rgb" / "a_rgb.png", rgb(1))
    png(base / "s" / "segment_semantic" / "a_segmentsemantic.png", seg)
    png(base / "s" / "normal" / "a_normal.png", normal)
    png(base / "s" / "depth_zbuffer" / "a_depth_zbuffer.png", depth)
    png(base / "s" / "keypoints2d" / "a_keypoints2d.png", kp)
    png(base / "s" / "edge_texture" / "a_edge_texture.png", edge)
    row = ["s/rgb/a_rgb.png", "s/segment_semantic/a_segmentsemantic.png", "s/normal/a_normal.png",
           "s/depth_zbuffer/a_depth_zbuffer.png", "s/keypoints2d/a_keypoints2d.png",
           "s/edge_texture/a_edge_texture.png"]
    (tmp_path / "taskonomy.json").write_text(json.dumps({"test": [row]}))
    item = Taskonomy(tmp_path, "test")[0]
    assert (item["segment_semantic"][:3] == -1).all() and (item["segment_semantic"][3:] == 3).all()
    assert item["depth_zbuffer"][0, 1, 0] == pytest.approx(2.0) and (item["depth_zbuffer"][0, 0] == 0).all()
    assert (item["normal"][:, 0] == 0).all()  # masked where depth is invalid
    assert item["normal"][0, 2, 2] == pytest.approx(1.0, abs=0.01)
    assert item["keypoints2d"][0, 0, 0] == pytest.approx(163 / 2 ** 16 / 0.005)
    assert item["edge_texture"][0, 0, 0] == 1.0  # clipped at 0.08
    # flip mirrors and negates the normal's x
    torch.manual_seed(0)
    flipped = [Taskonomy(tmp_path, "test", ("normal",), flip=True)[0]["normal"][0, 2, 2].item() for _ in range(8)]
    assert min(flipped) == pytest.approx(-1.0, abs=0.01) and max(flipped) == pytest.approx(1.0, abs=0.01)


def test_nyud_atrc_layout(tmp_path):
    (tmp_path / "gt_sets").mkdir()
    (tmp_path / "gt_sets" / "val.txt").write_text("0001\n0002\n")
    (tmp_path / "images").mkdir()
    for i in ("0001", "0002"):
        Image.fromarray(rgb(2)).save(tmp_path / "images" / f"{i}.jpg")
        seg = np.full((H, W), 7, dtype=np.uint8)
        seg[0] = 0
        png(tmp_path / "segmentation" / f"{i}.png", seg)
        npy(tmp_path / "depth" / f"{i}.npy", np.full((H, W), 3.0, dtype=np.float32))
        nrm = np.zeros((H, W, 3), dtype=np.float32)
        nrm[1:, :, 1] = 2.0
        npy(tmp_path / "normals" / f"{i}.npy", nrm)
        npy(tmp_path / "edge" / f"{i}.npy", np.eye(H, W, dtype=np.float32))
    ds = NYUD(tmp_path, "val", check="all")
    item = ds[1]
    assert len(ds) == 2
    assert (item["segment_semantic"][0] == -1).all() and (item["segment_semantic"][1] == 6).all()
    assert (item["normal"][:, 0] == 0).all() and (item["normal"][1, 1:] == 1).all()
    assert item["edge_texture"].sum() == min(H, W)
    (tmp_path / "edge" / "0002.npy").unlink()
    with pytest.raises(DataError, match=r"edge/0002\.npy"):
        NYUD(tmp_path, "val", check="all")


def test_pascal_context_atrc_layout(tmp_path):
    (tmp_path / "ImageSets" / "Context").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Context" / "train.txt").write_text("2008_000001\n")
    (tmp_path / "JPEGImages").mkdir()
    Image.fromarray(rgb(3)).save(tmp_path / "JPEGImages" / "2008_000001.jpg")
    seg = np.full((H, W), 15, dtype=np.uint8)
    seg[0] = 255
    png(tmp_path / "semseg" / "pascal-context" / "2008_000001.png", seg)
    sal = np.zeros((H, W), dtype=np.uint8)
    sal[2:4] = 200
    png(tmp_path / "sal_distill" / "2008_000001.png", sal)
    png(tmp_path / "normals_distill" / "2008_000001.png", np.full((H, W, 3), 255, dtype=np.uint8))
    lab = np.zeros((H, W), dtype=np.uint16)
    lab[:, 4:] = 59
    write_mat(tmp_path / "pascal-context" / "trainval" / "2008_000001.mat", {"LabelMap": lab})
    with pytest.raises(DataError, match=r"human_parts/2008_000001\.mat"):
        PascalContext(tmp_path, "train")  # all tasks by default
    item = PascalContext(tmp_path, "train", ("segment_semantic", "saliency", "normal", "edge_texture"))[0]
    edge = item["edge_texture"][0]
    assert (edge[:, 3] == 1).all() and edge.sum() == H
    assert (item["segment_semantic"][0] == -1).all() and (item["segment_semantic"][1] == 15).all()
    assert item["saliency"].sum() == 2 * W
    assert torch.allclose(item["normal"][:, 0, 0], torch.full((3,), 3 ** -0.5))
    # Human parts: a person (class 15) with a head and a left foot, and a non-person object.
    head = np.zeros((H, W), dtype=np.uint8)
    head[0, :2] = 1
    foot = np.zeros((H, W), dtype=np.uint8)
    foot[5, 5:] = 1
    person = {"class": "person", "class_ind": np.array([[15.0]]), "mask": head | foot,
              "parts": [{"part_name": "head", "mask": head}, {"part_name": "lfoot", "mask": foot}]}
    chair = {"class": "chair", "class_ind": np.array([[9.0]]), "mask": foot,
             "parts": [{"part_name": "head", "mask": foot}]}
    write_mat(tmp_path / "human_parts" / "2008_000001.mat",
               {"anno": [{"imname": "2008_000001", "objects": [chair, person]}]})
    ds = PascalContext(tmp_path, "train", ("human_parts", "segment_semantic"))
    assert ds.task_classes == {"segment_semantic": 21, "human_parts": 7}
    parts = ds[0]["human_parts"]
    assert parts.dtype == torch.int64 and (parts[0, :2] == 1).all() and (parts[5, 5:] == 6).all()
    assert parts.sum() == 2 + 6 * 3
    write_mat(tmp_path / "human_parts" / "2008_000001.mat",
               {"anno": [{"imname": "2008_000001", "objects": [chair]}]})
    assert (PascalContext(tmp_path, "train", ("human_parts",))[0]["human_parts"] == -1).all()


@pytest.mark.parametrize("compress", [True, False])
def test_mat_reader_numeric_matrices(tmp_path, compress):
    from automtl.data._matfile import read_mat

    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    b = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    write_mat(tmp_path / "x.mat", {"A": a, "Bee": b}, compress=compress)
    got = read_mat(tmp_path / "x.mat")
    np.testing.assert_array_equal(got["A"], a)
    np.testing.assert_array_equal(got["Bee"], b)
    write_mat(tmp_path / "s.mat", {"anno": [{"imname": "x1", "objects": [{"v": a}, {"v": b}]}]}, compress=compress)
    anno = read_mat(tmp_path / "s.mat")["anno"]
    assert anno[0]["imname"] == "x1"
    np.testing.assert_array_equal(anno[0]["objects"][1]["v"], b)
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="bad.mat"):
        read_mat(tmp_path / "bad.mat")
