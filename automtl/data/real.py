"""Real multi-task data sets, read in their published on-disk layouts.

Every data set yields the same batch format as ``automtl.data.synthetic`` (image float32
``[3,H,W]`` in [0, 1]; ``segment_semantic`` int64 with -1 = ignore; ``depth_zbuffer``
float32 ``[1,H,W]`` with 0 = invalid; ``normal`` unit vectors ``[3,H,W]`` with zero
vectors = invalid; ``edge_texture``/``saliency``/``keypoints2d`` float32 ``[1,H,W]``),
so one Trainer, one set of losses and metrics serve all of them.

Layouts (paths relative to ``root``):

- ``CityScapes`` (AdaShare/AutoMTL): ``cityscape.json`` = ``{split: [[img, depth, label_2,
  label_7, label_19], ...]}`` of ``.npy`` files: image ``[H,W,3]`` RGB in [0, 1], depth
  ``[H,W,1]`` (0 = invalid), labels ``[H,W]`` with -1 = ignore. Tasks: segment_semantic
  (19 classes), depth_zbuffer.
- ``NYUv2`` (AdaShare/AutoMTL 3-task): ``nyu_v2_3task.json`` = ``{split: [[img, seg, normal,
  depth], ...]}``: image ``.png`` (RGB), seg ``.png`` (40 classes, 255 = ignore), normal
  ``.png`` (``n = 2·v/255 − 1`` of the R, G, B channels; pixels whose largest channel is 255
  are invalid, as in AutoMTL), depth ``.npy`` (metres, 0 = invalid). ``encoding="automtl"``
  decodes the normals as AutoMTL's loader does instead: the file's channels in OpenCV's
  order (B, G, R) and the raw 0–255 vector scaled to unit length (its targets differ from
  the standard ones by tens of degrees, so use it to compare with AutoMTL's tables). AutoMTL keeps this json under
  ``data/utils/``; copy it into ``root`` (or pass ``index=``).
- ``Taskonomy`` (AdaShare/AutoMTL tiny split): ``taskonomy.json`` = ``{split: [[rgb, seg,
  normal, depth, keypoints2d, edge_texture], ...]}`` with paths relative to ``root/train``
  (split ``train``) or ``root/test`` (others); ``.png`` files: seg (0 = unlabelled → -1,
  k → k−1, 17 classes), normal (RGB, masked where depth is invalid), depth (uint16,
  1/512 m, ≥ 64500 = invalid; returned in metres), keypoints2d (uint16/2¹⁶ scaled from
  [0, 0.005] to [0, 1]), edge_texture (uint16/2¹⁶ scaled from [0, 0.08] to [0, 1]; soft
  targets).
- ``NYUD`` (ATRC / InvPT / MTI-Net ``NYUD_MT``): ``gt_sets/{split}.txt`` (one id a line),
  ``images/{id}.jpg``, ``segmentation/{id}.png`` (0 = ignore, k → k−1, 40 classes),
  ``depth/{id}.npy`` (metres, 0 = invalid), ``normals/{id}.npy`` (``[H,W,3]``, zero =
  invalid), ``edge/{id}.npy`` (0/1).
- ``PascalContext`` (ATRC / InvPT ``PASCAL_MT``): ``ImageSets/Context/{split}.txt``,
  ``JPEGImages/{id}.jpg``, ``semseg/VOC12/{id}.png`` or ``semseg/pascal-context/{id}.png``
  (21 classes, 255 = ignore), ``sal_distill/{id}.png`` (> 0.5 = salient),
  ``normals_distill/{id}.png`` (``2·v/255 − 1``), ``pascal-context/trainval/{id}.mat``
  (``LabelMap``; edge_texture = pixels whose label differs from the right or lower
  neighbour, a one-pixel boundary like ATRC's thinned Laplacian, not identical to it).
  ``human_parts/{id}.mat`` (``anno.objects``: persons, class 15, with ``parts``; 6 parts
  + background as in ATRC's default, 7 classes; images without annotated persons are all
  ignore). Not supported: masking the distilled normals to NYU-compatible classes (needs
  ATRC's class lists); normals are used unmasked.

A root in the wrong layout raises ``DataError`` naming the first missing file (the index
file, then the files of the first sample, or of every sample with ``check="all"``); a split
the index lacks names the splits it has. Evaluation defaults to the split AutoMTL reports on
(``test`` for NYUv2 and CityScapes, ``test_small`` for Taskonomy), ``val`` for NYUD and
PASCAL-Context.

:func:`real_loaders` turns a set into per-task loaders (the data builders ``CityScapes``,
``NYUv2`` … of :data:`automtl.registry.DATASETS` call it); :func:`make_real_loaders` is the
same by lower-case name.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from automtl.data._augment import pair, random_crop, random_flip, random_scale, resize_sample
from automtl.data._matfile import read_mat
from automtl.data.loaders import task_loaders
from automtl.data.tasks import IGNORE_INDEX
from automtl.errors import ConfigError, DataError

__all__ = ["RealDataset", "CityScapes", "NYUv2", "Taskonomy", "NYUD", "PascalContext", "REAL_SETS",
           "real_set", "real_loaders", "make_real_loaders"]


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    return path


def _png(path: Path) -> np.ndarray:
    try:
        with Image.open(_need(path)) as im:
            return np.array(im)
    except DataError:
        raise
    except Exception as e:  # unreadable image: name the file
        raise DataError(f"cannot read image {path}: {e}") from None


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(_need(path))
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"cannot read array {path}: {e}") from None


def _rgb(arr: np.ndarray) -> np.ndarray:
    """``[H,W,3]`` image (uint8 or float in [0,1]) → float32 ``[3,H,W]`` in [0, 1]."""
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _unit(n: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``[H,W,3]`` vectors → unit ``[3,H,W]``; invalid (or zero) pixels become zero vectors."""
    n = n.astype(np.float32)
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    ok = valid & (norm[..., 0] > 1e-6)
    out = np.where(ok[..., None], n / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


class RealDataset(Dataset):
    """Base of the real-set readers: an index of per-sample files and per-task decoders.

    Item ``i`` is ``{"image": ..., task: ...}`` (formats in the module docs). ``size``
    resizes every sample (bilinear image, nearest labels); then, for training, ``scale``
    rescales by a random factor in ``(low, high)``, ``flip=True`` mirrors at random (normal x
    negated) and ``crop`` takes a random window (padded with each task's invalid value where
    the sample is smaller), all drawing from torch's global RNG.
    """

    name = "real"
    tasks_available: tuple[str, ...] = ()
    num_classes: int = 0
    num_parts: int = 0  # human-part classes (PASCAL-Context)
    #: JSON index ``{split: [row, ...]}`` in the root (AdaShare/AutoMTL sets) …
    index_name: str | None = None
    #: … or a folder of ``{split}.txt`` id lists (ATRC/InvPT sets)
    split_dir: str | None = None
    #: splits to evaluate on, in order of preference (the first the index has is the default)
    eval_splits: tuple[str, ...] = ("val",)
    #: target encodings this set offers (``encoding=``); the first is the default
    encodings: tuple[str, ...] = ("standard",)

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks: Sequence[str] | None = None, *,
                 size: int | Sequence[int] | None = None, flip: bool = False, check: str = "first",
                 index: str | os.PathLike | None = None, crop: int | Sequence[int] | None = None,
                 scale: Sequence[float] | None = None, encoding: str = "standard") -> None:
        self.root = Path(root)
        self.split = split
        self.tasks = tuple(tasks) if tasks is not None else self.tasks_available
        bad = [t for t in self.tasks if t not in self.tasks_available]
        if bad:
            raise ConfigError(f"{self.name} has no task(s) {bad}; available: {list(self.tasks_available)}",
                              key="tasks")
        if check not in ("first", "all", "none"):
            raise ConfigError("check must be 'first', 'all' or 'none'", key="check", value=check)
        if encoding not in self.encodings:
            raise ConfigError(f"{self.name} offers the target encodings {list(self.encodings)}",
                              key="encoding", value=encoding)
        self.encoding = encoding
        self.size = pair(size, key="size")
        self.crop = pair(crop, key="crop")
        self.scale = _scale_range(scale)
        self.flip = flip
        self.index_path = Path(index) if index is not None else None
        _need_root(self.root)
        self.samples: list[dict[str, Path]] = self._index()
        todo = {"first": self.samples[:1], "all": self.samples, "none": []}[check]
        for s in todo:
            for key in ("image",) + self.tasks:
                for p in self._files(s, key):
                    _need(p)

    # -- splits -----------------------------------------------------------------------------
    @classmethod
    def splits(cls, root: str | os.PathLike, index: str | os.PathLike | None = None) -> list[str]:
        """The split names the index under ``root`` holds (DataError naming what is missing)."""
        root = _need_root(Path(root))
        if cls.index_name is not None:
            return sorted(_read_json(Path(index) if index is not None else root / cls.index_name))
        folder = root / str(cls.split_dir)
        if not folder.is_dir():
            raise DataError(f"missing split folder: {folder}")
        return sorted(p.stem for p in folder.glob("*.txt"))

    @classmethod
    def default_eval_split(cls, root: str | os.PathLike, index: str | os.PathLike | None = None) -> str:
        """The first of :attr:`eval_splits` the index holds (else the first: its error names the rest)."""
        have = cls.splits(root, index)
        return next((s for s in cls.eval_splits if s in have), cls.eval_splits[0])

    # -- hooks ------------------------------------------------------------------------------
    def _index(self) -> list[dict[str, Path]]:  # pragma: no cover - abstract
        raise TypeError

    def _files(self, sample: dict[str, Path], key: str) -> list[Path]:
        """Files needed to decode ``key`` of a sample (default: the one under that key)."""
        return [sample[key]]

    def _decode(self, sample: dict[str, Path], key: str) -> np.ndarray:  # pragma: no cover - abstract
        raise TypeError

    # -- helpers ----------------------------------------------------------------------------
    def _json_rows(self) -> list[Any]:
        """The rows of this split in the JSON index."""
        path = self.index_path or self.root / str(self.index_name)
        doc = _read_json(path)
        if self.split not in doc:
            raise DataError(f"index {path} has no split '{self.split}' (it has {sorted(doc)})")
        return doc[self.split]

    def _list_index(self) -> list[str]:
        """The sample ids of this split's list file."""
        path = self.index_path or self.root / str(self.split_dir) / f"{self.split}.txt"
        if not path.is_file() and self.index_path is None:
            have = self.splits(self.root)
            raise DataError(f"missing file: {path}: no split '{self.split}' (the split folder has {have})")
        ids = [x.strip() for x in _need(path).read_text().splitlines() if x.strip()]
        if not ids:
            raise DataError(f"index {path} lists no samples")
        return ids

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def task_classes(self) -> dict[str, int]:
        """Class counts of this set's segmentation tasks, for ``default_metrics(num_classes=...)``."""
        out = {"segment_semantic": self.num_classes}
        if "human_parts" in self.tasks_available:
            out["human_parts"] = self.num_parts
        return {t: n for t, n in out.items() if t in self.tasks}

    def get(self, index: int, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, target)`` of one task."""
        item = self._item(index, (task,))
        return item["image"], item[task]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self._item(index, self.tasks)

    def _item(self, index: int, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        s = self.samples[index]
        out = {"image": torch.from_numpy(self._decode(s, "image"))}
        for t in tasks:
            arr = self._decode(s, t)
            out[t] = torch.from_numpy(arr).long() if t in ("segment_semantic", "human_parts") \
                else torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        h, w = out["image"].shape[-2:]
        for t in tasks:
            if tuple(out[t].shape[-2:]) != (h, w):
                raise DataError(f"{t} of sample {index} has size {tuple(out[t].shape[-2:])}, image {(h, w)}: "
                                f"{self._files(s, t)[0]}")
        if self.size is not None:
            out = resize_sample(out, self.size)
        if self.scale is not None:
            out = random_scale(out, *self.scale)
        if self.flip:
            out = random_flip(out)
        if self.crop is not None:
            out = random_crop(out, self.crop)
        return out


def _need_root(root: Path) -> Path:
    if not root.is_dir():
        raise DataError(f"missing data root: {root}")
    return root


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON index as a dict of splits (parsed once per file version: indexes can be large)."""
    _need(path)
    stat = path.stat()
    return _parse_json(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parse_json(path: str, _mtime_ns: int, _size: int) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"index {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise DataError(f"index {path} is not a JSON object of splits")
    return doc


def _scale_range(scale: Sequence[float] | None) -> tuple[float, float] | None:
    if scale is None:
        return None
    try:
        low, high = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ConfigError("must be a pair (low, high) of factors", key="scale", value=scale) from None
    if not 0 < low <= high:
        raise ConfigError("needs 0 < low <= high", key="scale", value=scale)
    return low, high


class CityScapes(RealDataset):
    """CityScapes as AdaShare/AutoMTL store it (``cityscape.json`` of ``.npy`` files)."""

    name = "cityscapes"
    tasks_available = ("segment_semantic", "depth_zbuffer")
    num_classes = 19
    index_name = "cityscape.json"
    eval_splits = ("test",)

    def _index(self) -> list[dict[str, Path]]:
        out = []
        for row in self._json_rows():
            img, depth, _l2, _l7, l19 = row
            out.append({"image": self.root / img, "depth_zbuffer": self.root / depth,
                        "segment_semantic": self.root / l19})
        return out

    def _decode(self, s: dict[str, Path], key: str) -> np.ndarray:
        arr = _npy(s[key])
        if key == "image":
            return _rgb(arr)
        if key == "segment_semantic":
            seg = arr.reshape(arr.shape[:2]).astype(np.int64)
            seg[(seg < 0) | (seg >= self.num_classes)] = IGNORE_INDEX
            return seg
        d = arr.reshape(arr.shape[:2]).astype(np.float32)
        return np.where(np.isfinite(d) & (d > 0), d, 0.0)[None]


class NYUv2(RealDataset):
    """NYUv2 (3 tasks) as AdaShare/AutoMTL store it (``nyu_v2_3task.json``)."""

    name = "nyuv2"
    tasks_available = ("segment_semantic", "normal", "depth_zbuffer")
    num_classes = 40
    index_name = "nyu_v2_3task.json"
    eval_splits = ("test",)  # AutoMTL's index: train, train1, train2, test
    encodings = ("standard", "automtl")

    def _index(self) -> list[dict[str, Path]]:
        return [{"image": self.root / img, "segment_semantic": self.root / seg, "normal": self.root / nrm,
                 "depth_zbuffer": self.root / dep} for img, seg, nrm, dep in self._json_rows()]

    def _decode(self, s: dict[str, Path], key: str) -> np.ndarray:
        if key == "image":
            return _rgb(_png(s[key]))
        if key == "segment_semantic":
            seg = _png(s[key]).astype(np.int64)
            seg = seg[..., 0] if seg.ndim == 3 else seg
            seg[(seg >= self.num_classes)] = IGNORE_INDEX
            return seg
        if key == "normal":
            raw = _png(s[key]).astype(np.float32)[..., :3]
            valid = raw.max(axis=2) < 255
            if self.encoding == "automtl":  # AutoMTL: cv2.imread (B, G, R), then normalize(raw)
                return _unit(raw[..., ::-1], valid)
            return _unit(2 * raw / 255 - 1, valid)
        d = _npy(s[key]).astype(np.float32)
        d = d.reshape(d.shape[:2])
        return np.where(np.isfinite(d) & (d > 0), d, 0.0)[None]


class Taskonomy(RealDataset):
    """Tiny-Taskonomy as AdaShare/AutoMTL store it (``taskonomy.json`` of ``.png`` files)."""

    name = "taskonomy"
    tasks_available = ("segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
    num_classes = 17
    index_name = "taskonomy.json"
    eval_splits = ("test_small", "test")  # AutoMTL evaluates on test_small
    DEPTH_INVALID = 64500
    DEPTH_UNIT = 512.0

    def _index(self) -> list[dict[str, Path]]:
        base = self.root / ("train" if self.split == "train" else "test")
        keys = ("image", "segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
        return [{k: base / p for k, p in zip(keys, row)} for row in self._json_rows()]

    def _files(self, s: dict[str, Path], key: str) -> list[Path]:
        return [s[key], s["depth_zbuffer"]] if key == "normal" else [s[key]]

    def _depth(self, s: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        raw = _png(s["depth_zbuffer"]).astype(np.float32)
        raw = raw[..., 0] if raw.ndim == 3 else raw
        valid = raw < self.DEPTH_INVALID
        return np.where(valid, raw / self.DEPTH_UNIT, 0.0), valid

    def _decode(self, s: dict[str, Path], key: str) -> np.ndarray:
        if key == "image":
            return _rgb(_png(s[key]))
        if key == "segment_semantic":
            seg = _png(s[key]).astype(np.int64)
            seg = seg[..., 0] if seg.ndim == 3 else seg
            seg = seg - 1
            seg[(seg < 0) | (seg >= self.num_classes)] = IGNORE_INDEX
            return seg
        if key == "depth_zbuffer":
            return self._depth(s)[0][None].astype(np.float32)
        if key == "normal":
            raw = _png(s[key]).astype(np.float32)[..., :3]
            return _unit(2 * raw / 255 - 1, self._depth(s)[1])
        raw = _png(s[key]).astype(np.float32)
        raw = raw[..., 0] if raw.ndim == 3 else raw
        top = 0.005 if key == "keypoints2d" else 0.08
        return np.clip(raw / 2 ** 16 / top, 0, 1)[None]


class NYUD(RealDataset):
    """NYUD-v2 as ATRC / InvPT / MTI-Net store it (``NYUD_MT``: id lists + per-task folders)."""

    name = "nyud"
    tasks_available = ("segment_semantic", "depth_zbuffer", "normal", "edge_texture")
    num_classes = 40
    split_dir = "gt_sets"
    _DIRS = {"image": ("images", ".jpg"), "segment_semantic": ("segmentation", ".png"),
             "depth_zbuffer": ("depth", ".npy"), "normal": ("normals", ".npy"), "edge_texture": ("edge", ".npy")}

    def _index(self) -> list[dict[str, Path]]:
        ids = self._list_index()
        return [{k: self.root / d / f"{i}{ext}" for k, (d, ext) in self._DIRS.items()} for i in ids]

    def _decode(self, s: dict[str, Path], key: str) -> np.ndarray:
        if key == "image":
            return _rgb(_png(s[key]))
        if key == "segment_semantic":
            seg = _png(s[key]).astype(np.int64)
            seg = (seg[..., 0] if seg.ndim == 3 else seg) - 1  # 0 = background/unlabelled -> ignored
            seg[(seg < 0) | (seg >= self.num_classes)] = IGNORE_INDEX
            return seg
        arr = _npy(s[key]).astype(np.float32)
        if key == "normal":
            return _unit(arr, np.ones(arr.shape[:2], dtype=bool))
        arr = arr.reshape(arr.shape[:2])
        if key == "depth_zbuffer":
            return np.where(np.isfinite(arr) & (arr > 0), arr, 0.0)[None]
        return (arr > 0.5).astype(np.float32)[None]


class PascalContext(RealDataset):
    """PASCAL-Context as ATRC / InvPT store it (``PASCAL_MT``): semseg, parts, saliency, normals, edges."""

    name = "pascal_context"
    tasks_available = ("segment_semantic", "human_parts", "saliency", "normal", "edge_texture")
    num_classes = 21
    num_parts = 7
    split_dir = "ImageSets/Context"
    PERSON = 15
    #: Part name → label of the 6-part grouping (head, torso, upper arms, lower arms/hands,
    #: upper legs, lower legs/feet), the grouping ATRC/ASTMT use by default.
    PARTS = {**dict.fromkeys(("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow",
                              "reye"), 1),
             "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3,
             **dict.fromkeys(("lhand", "llarm", "rhand", "rlarm"), 4), "luleg": 5, "ruleg": 5,
             **dict.fromkeys(("lfoot", "llleg", "rfoot", "rlleg"), 6)}

    def _index(self) -> list[dict[str, Path]]:
        ids = self._list_index()
        out = []
        for i in ids:
            voc = self.root / "semseg" / "VOC12" / f"{i}.png"
            seg = voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{i}.png"
            out.append({"image": self.root / "JPEGImages" / f"{i}.jpg", "segment_semantic": seg,
                        "saliency": self.root / "sal_distill" / f"{i}.png",
                        "normal": self.root / "normals_distill" / f"{i}.png",
                        "edge_texture": self.root / "pascal-context" / "trainval" / f"{i}.mat",
                        "human_parts": self.root / "human_parts" / f"{i}.mat"})
        return out

    def _parts(self, s: dict[str, Path]) -> np.ndarray:
        path = s["human_parts"]
        mats = read_mat(_need(path))
        try:
            objects = mats["anno"][0]["objects"]
        except (KeyError, IndexError, TypeError):
            raise DataError(f"{path}: expected a struct 'anno' with a field 'objects'") from None
        target = None
        for obj in objects if isinstance(objects, list) else []:
            parts = obj.get("parts")
            if int(np.asarray(obj.get("class_ind", 0)).ravel()[0]) != self.PERSON or not isinstance(parts, list) \
                    or not parts:
                continue
            if target is None:
                target = np.zeros(np.asarray(obj["mask"]).shape, dtype=np.int64)
            for part in parts:
                name = part.get("part_name")
                if name not in self.PARTS:
                    raise DataError(f"{path}: unknown human part {name!r}")
                target[np.asarray(part["mask"]).astype(bool)] = self.PARTS[name]
        if target is None:  # no annotated person: nothing to learn here
            with Image.open(_need(s["image"])) as im:
                w, h = im.size
            target = np.full((h, w), IGNORE_INDEX, dtype=np.int64)
        return target

    def _decode(self, s: dict[str, Path], key: str) -> np.ndarray:
        if key == "edge_texture":
            mats = read_mat(_need(s[key]))
            if "LabelMap" not in mats:
                raise DataError(f"{s[key]}: no numeric 'LabelMap' variable (has {sorted(mats)})")
            lab = mats["LabelMap"]
            edge = np.zeros(lab.shape, dtype=bool)
            edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
            edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
            return edge.astype(np.float32)[None]
        if key == "human_parts":
            return self._parts(s)
        arr = _png(s[key])
        if key == "image":
            return _rgb(arr)
        if key == "segment_semantic":
            seg = (arr[..., 0] if arr.ndim == 3 else arr).astype(np.int64)
            seg[(seg < 0) | (seg >= self.num_classes)] = IGNORE_INDEX
            return seg
        if key == "saliency":
            sal = (arr[..., 0] if arr.ndim == 3 else arr).astype(np.float32) / 255
            return (sal > 0.5).astype(np.float32)[None]
        raw = arr.astype(np.float32)[..., :3]
        return _unit(2 * raw / 255 - 1, np.ones(raw.shape[:2], dtype=bool))


#: The real sets by lower-case name (``make_real_loaders("nyuv2", ...)``); configs name them by
#: class name through :data:`automtl.registry.DATASETS` (``data = dict(type="NYUv2", ...)``).
REAL_SETS: dict[str, type[RealDataset]] = {c.name: c for c in (CityScapes, NYUv2, Taskonomy, NYUD, PascalContext)}


def real_set(name: str | type[RealDataset]) -> type[RealDataset]:
    """The reader class of ``name`` (lower-case name or class name); ConfigError naming the choices."""
    if isinstance(name, type) and issubclass(name, RealDataset):
        return name
    by_name = {**REAL_SETS, **{c.__name__: c for c in REAL_SETS.values()}}
    if name not in by_name:
        raise ConfigError(f"unknown data set; choose one of {sorted(REAL_SETS)}", key="dataset", value=name)
    return by_name[name]


def real_loaders(dataset: str | type[RealDataset], tasks: Sequence[str] | None, *, data_root: str | os.PathLike,
                 batch_size: int = 16, size: int | Sequence[int] | None = None,
                 val_size: int | Sequence[int] | None = None, crop: int | Sequence[int] | None = None,
                 scale: Sequence[float] | None = None, flip: bool = True, seed: int = 0,
                 train_split: str = "train", val_split: str | None = None, num_workers: int = 0,
                 check: str = "first", encoding: str = "standard",
                 ) -> tuple[dict[str, DataLoader], dict[str, DataLoader]]:
    """Per-task ``(train_loaders, val_loaders)`` of a real set, in the synthetic batch format.

    ``size`` resizes both splits (``val_size``, when given, the validation split instead);
    ``scale``, ``flip`` and ``crop`` augment the train split only. ``val_split`` defaults to
    the set's evaluation split (:attr:`RealDataset.eval_splits`: ``test`` for NYUv2 and
    CityScapes, ``test_small`` for Taskonomy where the index has it, ``val`` otherwise).
    ``encoding`` picks the target encoding (:attr:`RealDataset.encodings`: ``"standard"``, or
    ``"automtl"`` for AutoMTL's NYUv2 normals).
    """
    cls = real_set(dataset)
    if val_split is None:
        val_split = cls.default_eval_split(data_root)
    train = cls(data_root, train_split, tasks, size=size, crop=crop, scale=scale, flip=flip, check=check,
                encoding=encoding)
    val = cls(data_root, val_split, tasks, size=val_size if val_size is not None else size, check=check,
              encoding=encoding)
    return task_loaders(train, val, batch_size=batch_size, seed=seed, num_workers=num_workers)


def make_real_loaders(name: str, root: str | os.PathLike, tasks: Sequence[str] | None = None, *,
                      batch_size: int = 8, size: int | Sequence[int] | None = None, seed: int = 0,
                      train_split: str = "train", val_split: str | None = None, num_workers: int = 0,
                      check: str = "first", val_size: int | Sequence[int] | None = None,
                      crop: int | Sequence[int] | None = None, scale: Sequence[float] | None = None,
                      flip: bool = True, encoding: str = "standard",
                      ) -> tuple[dict[str, DataLoader], dict[str, DataLoader]]:
    """:func:`real_loaders` of the set named ``name`` (``"nyuv2"``, ``"cityscapes"`` …) under ``root``."""
    return real_loaders(real_set(name), tasks, data_root=root, batch_size=batch_size, size=size,
                        val_size=val_size, crop=crop, scale=scale, flip=flip, seed=seed,
                        train_split=train_split, val_split=val_split, num_workers=num_workers, check=check,
                        encoding=encoding)
