"""Writers of tiny real data sets in each published on-disk layout (random but seeded content),
shared by the reader tests and the config end-to-end tests."""
from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 6, 8


def png(path: Path, arr: np.ndarray) -> None:
    """``arr`` as a PNG (uint16 arrays as 16-bit grey), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def npy(path: Path, arr: np.ndarray) -> None:
    """``arr`` as a ``.npy`` file, parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def rgb(seed: int, hw: tuple[int, int] = (H, W)) -> np.ndarray:
    """A random uint8 ``[H,W,3]`` picture."""
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def _unit_normals(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    n = rng.normal(size=(*hw, 3))
    n[..., 2] = np.abs(n[..., 2]) + 0.5  # facing the camera
    return n / np.linalg.norm(n, axis=2, keepdims=True)


def write_cityscapes(root: Path, n: int = 2, hw: tuple[int, int] = (H, W),
                     splits: tuple[str, ...] = ("train", "test"), min_class: int = 0) -> None:
    """AdaShare/AutoMTL CityScapes: ``cityscape.json`` of ``.npy`` files (labels in
    ``[min_class, 19)``, row 0 ignored; depth pixel (1, 1) invalid)."""
    index: dict[str, list[list[str]]] = {}
    for s, split in enumerate(splits):
        index[split] = []
        for i in range(n):
            rng = np.random.default_rng([s, i])
            seg = rng.integers(min_class, 19, hw).astype(np.int64)
            seg[0, :] = -1
            depth = rng.uniform(1, 50, (*hw, 1)).astype(np.float32)
            depth[1, 1] = 0
            npy(root / split / "image" / f"{i}.npy", rng.uniform(0, 1, (*hw, 3)).astype(np.float32))
            npy(root / split / "depth" / f"{i}.npy", depth)
            for k in (2, 7, 19):
                npy(root / split / f"label_{k}" / f"{i}.npy", seg)
            index[split].append([f"{split}/image/{i}.npy", f"{split}/depth/{i}.npy", f"{split}/label_2/{i}.npy",
                                 f"{split}/label_7/{i}.npy", f"{split}/label_19/{i}.npy"])
    (root / "cityscape.json").write_text(json.dumps(index))


def write_nyuv2(root: Path, n: int = 2, hw: tuple[int, int] = (H, W),
                splits: tuple[str, ...] = ("train", "train1", "train2", "test"), min_class: int = 0) -> None:
    """AdaShare/AutoMTL NYUv2: ``nyu_v2_3task.json`` (AutoMTL's splits) of ``.png``/``.npy`` files
    (labels in ``[min_class, 40)``, pixel (0, 0) ignored)."""
    index: dict[str, list[list[str]]] = {}
    for s, split in enumerate(splits):
        index[split] = []
        for i in range(n):
            rng = np.random.default_rng([10, s, i])
            name = f"{split}_{i}"
            seg = rng.integers(min_class, 40, hw).astype(np.uint8)
            seg[0, 0] = 255
            normal = np.clip(np.round((_unit_normals(rng, hw) + 1) / 2 * 255), 0, 254).astype(np.uint8)
            depth = rng.uniform(0.5, 10, hw).astype(np.float32)
            depth[-1, -1] = 0
            png(root / "image" / f"{name}.png", rgb(s * 100 + i, hw))
            png(root / "seg" / f"{name}.png", seg)
            png(root / "normal_mask" / f"{name}.png", normal)
            npy(root / "depth" / f"{name}.npy", depth)
            index[split].append([f"image/{name}.png", f"seg/{name}.png", f"normal_mask/{name}.png",
                                 f"depth/{name}.npy"])
    (root / "nyu_v2_3task.json").write_text(json.dumps(index))


def write_taskonomy(root: Path, n: int = 2, hw: tuple[int, int] = (H, W),
                    splits: tuple[str, ...] = ("train", "test", "test_small")) -> None:
    """AdaShare/AutoMTL tiny Taskonomy: ``taskonomy.json``, rows relative to ``train/`` or ``test/``."""
    index: dict[str, list[list[str]]] = {}
    for s, split in enumerate(splits):
        index[split] = []
        base = root / ("train" if split == "train" else "test")
        for i in range(n):
            rng = np.random.default_rng([20, s, i])
            p = f"{split}_{i}"
            depth = rng.integers(256, 8192, hw).astype(np.uint16)
            depth[0, 0] = 65535
            normal = np.round((_unit_normals(rng, hw) + 1) / 2 * 255).astype(np.uint8)
            row = [f"scene/rgb/{p}_rgb.png", f"scene/segment_semantic/{p}_segmentsemantic.png",
                   f"scene/normal/{p}_normal.png", f"scene/depth_zbuffer/{p}_depth_zbuffer.png",
                   f"scene/keypoints2d/{p}_keypoints2d.png", f"scene/edge_texture/{p}_edge_texture.png"]
            arrays = [rgb(200 + s * 100 + i, hw), rng.integers(0, 18, hw).astype(np.uint8), normal, depth,
                      rng.integers(0, 400, hw).astype(np.uint16), rng.integers(0, 6000, hw).astype(np.uint16)]
            for rel, arr in zip(row, arrays):
                png(base / rel, arr)
            index[split].append(row)
    (root / "taskonomy.json").write_text(json.dumps(index))


def write_nyud(root: Path, n: int = 2, hw: tuple[int, int] = (H, W),
               splits: tuple[str, ...] = ("train", "val")) -> None:
    """ATRC/InvPT ``NYUD_MT``: ``gt_sets/{split}.txt`` and per-task folders."""
    for s, split in enumerate(splits):
        ids = [f"{split}{i:04d}" for i in range(n)]
        (root / "gt_sets").mkdir(parents=True, exist_ok=True)
        (root / "gt_sets" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i, name in enumerate(ids):
            rng = np.random.default_rng([30, s, i])
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(300 + s * 100 + i, hw)).save(root / "images" / f"{name}.jpg")
            png(root / "segmentation" / f"{name}.png", rng.integers(0, 41, hw).astype(np.uint8))
            npy(root / "depth" / f"{name}.npy", rng.uniform(0.5, 10, hw).astype(np.float32))
            npy(root / "normals" / f"{name}.npy", _unit_normals(rng, hw).astype(np.float32))
            npy(root / "edge" / f"{name}.npy", (rng.uniform(size=hw) > 0.8).astype(np.float32))


def write_pascal_context(root: Path, n: int = 2, hw: tuple[int, int] = (H, W),
                         splits: tuple[str, ...] = ("train", "val")) -> None:
    """ATRC/InvPT ``PASCAL_MT``: id lists, JPEGs, semseg/saliency/normal PNGs, ``.mat`` edges and parts."""
    for s, split in enumerate(splits):
        ids = [f"2008_{s}{i:05d}" for i in range(n)]
        (root / "ImageSets" / "Context").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Context" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i, name in enumerate(ids):
            rng = np.random.default_rng([40, s, i])
            (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(400 + s * 100 + i, hw)).save(root / "JPEGImages" / f"{name}.jpg")
            png(root / "semseg" / "VOC12" / f"{name}.png", rng.integers(0, 21, hw).astype(np.uint8))
            png(root / "sal_distill" / f"{name}.png", rng.integers(0, 256, hw).astype(np.uint8))
            png(root / "normals_distill" / f"{name}.png",
                np.round((_unit_normals(rng, hw) + 1) / 2 * 255).astype(np.uint8))
            labels = rng.integers(0, 60, hw).astype(np.uint16)
            write_mat(root / "pascal-context" / "trainval" / f"{name}.mat", {"LabelMap": labels})
            head = np.zeros(hw, dtype=np.uint8)
            head[0, :2] = 1
            person = {"class": "person", "class_ind": np.array([[15.0]]), "mask": head,
                      "parts": [{"part_name": "head", "mask": head}]}
            write_mat(root / "human_parts" / f"{name}.mat", {"anno": [{"imname": name, "objects": [person]}]})


WRITERS: dict[str, Callable[..., None]] = {
    "CityScapes": write_cityscapes, "NYUv2": write_nyuv2, "Taskonomy": write_taskonomy, "NYUD": write_nyud,
    "PascalContext": write_pascal_context,
}


# -- level-5 .mat files, as MATLAB writes them (no scipy needed) -----------------------------
def _mat_element(typ: int, data: bytes) -> bytes:
    if 0 < len(data) <= 4:  # MATLAB's small element format (e.g. short names)
        return struct.pack("<I", (len(data) << 16) | typ) + data.ljust(4, b"\0")
    return struct.pack("<II", typ, len(data)) + data + b"\0" * ((-len(data)) % 8)


def _mat_value(name: str, value: object) -> bytes:
    """miMATRIX bytes of a numeric array, a str, or a struct given as a list of dicts (1xN)."""
    el = _mat_element

    def head(cls: int, dims: tuple[int, ...]) -> bytes:
        return (el(6, struct.pack("<II", cls, 0)) + el(5, struct.pack(f"<{len(dims)}i", *dims))
                + el(1, name.encode()))

    if isinstance(value, str):
        return el(14, head(4, (1, len(value))) + el(4, np.array([ord(c) for c in value], "<u2").tobytes()))
    if isinstance(value, list):
        fields = list(value[0]) if value else []
        width = 32
        body = head(2, (1, len(value))) + el(5, struct.pack("<i", width))
        body += el(1, b"".join(f.encode().ljust(width, b"\0") for f in fields))
        for item in value:
            for f in fields:
                body += _mat_value("", item[f])
        return el(14, body)
    assert isinstance(value, np.ndarray)
    classes = {np.dtype("uint16"): (11, 4), np.dtype("float64"): (6, 9), np.dtype("uint8"): (9, 2)}
    cls, mi = classes[value.dtype]
    return el(14, head(cls, value.shape) + el(mi, np.asfortranarray(value).tobytes(order="F")))


def write_mat(path: Path, arrays: dict[str, object], compress: bool = True) -> None:
    """A level-5 .mat file (numeric arrays, strings, 1xN structs)."""
    body = b""
    for name, value in arrays.items():
        mat = _mat_value(name, value)
        packed = zlib.compress(mat)
        body += struct.pack("<II", 15, len(packed)) + packed if compress else mat
    header = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body)
