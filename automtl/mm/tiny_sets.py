"""Tiny, valid ImageNet-folder, COCO-json and ADE20K-layout sets rendered from the synthetic scenes.

Every OpenMMLab pipeline (classification, detection + instance segmentation, semantic
segmentation) runs end to end on them without downloading anything. Labels are true ones,
from the same ray hits as the pictures:

- ImageNet folder (``imagenet/``): the class is the shape of the primitive nearest to the
  camera (``sphere``, ``box``, ``cylinder``); ``train/<class>/<name>.JPEG``, ``val/<name>.JPEG``
  and ``meta/{train,val}.txt`` lines ``"<relative path> <label>"``, ``meta/classes.txt``.
- COCO (``coco/``): one instance per visible primitive, categories sphere (1), box (2),
  cylinder (3); boxes ``[x, y, w, h]`` and polygon masks traced from the pixel masks;
  ``annotations/instances_{train2017,val2017}.json`` and ``{train2017,val2017}/<id>.jpg``.
- ADE20K (``ade20k/ADEChallengeData2016/``): ``images/`` and ``annotations/`` with
  ``training`` / ``validation``; labels in ADE20K's own 150-class numbering (0 = other):
  floor → floor, wall → wall, box → box, sphere → ball, cylinder → column.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from automtl.checks import check_int, check_seed
from automtl.data.synthetic import render_sample
from automtl.data.tasks import SYNTHETIC_CLASSES

#: the instance classes of the tiny detection / classification sets, in label order
SHAPES: tuple[str, ...] = ("sphere", "box", "cylinder")
#: synthetic class → ADE20K label value (1-based: ADE20K class index + 1; 0 = other)
ADE20K_LABELS: dict[str, int] = {"wall": 1, "floor": 4, "box": 42, "cylinder": 43, "sphere": 120}
_SPLITS = {"train": ("train", "train2017", "training", "ADE_train"),
           "val": ("val", "val2017", "validation", "ADE_val")}


def _scenes(n: int, size: int, seed: int, split: str) -> Iterator[tuple[int, dict[str, np.ndarray], int]]:
    """``n`` rendered scenes with at least one visible primitive: (index, sample, nearest shape)."""
    index = written = 0
    while written < n:
        sample = render_sample(seed, index, size, split=split)
        index += 1
        near = np.unique(sample["instance"][sample["saliency"][0] > 0])
        if len(near) == 0:
            continue
        shape = SYNTHETIC_CLASSES[int(sample["instance_class"][int(near[0])])]
        written += 1
        yield index - 1, sample, SHAPES.index(shape)


def _rgb(sample: dict[str, np.ndarray]) -> np.ndarray:
    return np.round(sample["image"].transpose(1, 2, 0) * 255).astype(np.uint8)


def _save_image(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a binary mask as COCO polygons (pixel-corner coordinates)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) >= 3:
            polys.append([float(v) + 0.5 for v in c.reshape(-1)])
    return polys


def _instances(sample: dict[str, np.ndarray], image_id: int, next_id: int) -> list[dict[str, Any]]:
    """COCO annotations of the visible primitives of one scene."""
    out: list[dict[str, Any]] = []
    inst = sample["instance"]
    for obj in np.unique(inst[inst >= 0]):
        mask = inst == obj
        if mask.sum() < 4:
            continue
        polys = _polygons(mask)
        if not polys:
            continue
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0
        shape = SYNTHETIC_CLASSES[int(sample["instance_class"][int(obj)])]
        out.append({"id": next_id + len(out), "image_id": image_id, "category_id": SHAPES.index(shape) + 1,
                    "bbox": [x0, y0, w, h], "area": float(mask.sum()), "segmentation": polys,
                    "iscrowd": 0})
    return out


def _ade_label(sample: dict[str, np.ndarray]) -> np.ndarray:
    seg = sample["segment_semantic"]
    label = np.zeros(seg.shape, dtype=np.uint8)
    for cls, name in enumerate(SYNTHETIC_CLASSES):
        label[seg == cls] = ADE20K_LABELS[name]
    return label


def _write_split(root: Path, split: str, n: int, size: int, seed: int) -> None:
    imnet_dir, coco_dir, ade_dir, ade_prefix = _SPLITS[split]
    lines: list[str] = []
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ade = root / "ade20k" / "ADEChallengeData2016"
    for k, (index, sample, label) in enumerate(_scenes(n, size, seed, split)):
        rgb = _rgb(sample)
        name = f"{split}_{index:08d}.JPEG"
        rel = f"{SHAPES[label]}/{name}" if split == "train" else name
        _save_image(rgb, root / "imagenet" / imnet_dir / rel)
        lines.append(f"{rel} {label}")
        image_id = k + 1
        file_name = f"{image_id:012d}.jpg"
        _save_image(rgb, root / "coco" / coco_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        annotations += _instances(sample, image_id, len(annotations) + 1)
        stem = f"{ade_prefix}_{k + 1:08d}"
        _save_image(rgb, ade / "images" / ade_dir / f"{stem}.jpg")
        _save_image(_ade_label(sample), ade / "annotations" / ade_dir / f"{stem}.png")
    meta = root / "imagenet" / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / f"{imnet_dir}.txt").write_text("\n".join(lines) + "\n")
    (meta / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]}
    ann = root / "coco" / "annotations" / f"instances_{coco_dir}.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(coco))


def make_tiny_datasets(root: str | Path, *, n_train: int = 8, n_val: int = 4, size: int = 64,
                       seed: int = 0) -> dict[str, Path]:
    """Write the three tiny sets under ``root``; returns ``{"imagenet"|"coco"|"ade20k": folder}``
    (the folders a config's ``data_root`` points at)."""
    check_int(n_train, "n_train", lo=1)
    check_int(n_val, "n_val", lo=1)
    check_int(size, "size", lo=16)
    check_seed(seed)
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        _write_split(root, split, n, size, seed)
    return {"imagenet": root / "imagenet", "coco": root / "coco",
            "ade20k": root / "ade20k" / "ADEChallengeData2016"}
