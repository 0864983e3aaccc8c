"""Built-in synthetic multi-task scenes: the default data of the demo and the tests.

Each sample is a ray-cast picture of a room (textured floor, a textured back wall of
random height with sky above it) holding 3-6 primitives (spheres, yawed boxes, vertical
cylinders) in random colours and textures, lit by one directional light with hard
shadows. Labels are exact, from the same ray hits that make the picture, and each sample
is a pure function of ``(seed, split, index, size)``, so any resolution can be rendered
and two runs see identical data.

The tasks differ in what they need: ``edge_texture`` and ``normal`` are low-level
(texture stripes, face orientation), ``segment_semantic`` needs shape (colours are random
per object, so class = shape), ``depth_zbuffer`` needs global layout (horizon, wall,
object size), ``saliency`` needs a global comparison (the nearest primitive).

Tasks (``TASKS``) and target formats, per sample (a batch adds a leading ``B``):

========================  ==================  ========================================
task                      tensor              meaning / invalid encoding
========================  ==================  ========================================
image (input)             float32 [3,H,W]     RGB in [0, 1]
``segment_semantic``      int64   [H,W]       class in ``CLASSES`` (floor, wall,
                                              sphere, box, cylinder); -1 = sky/ignore
``depth_zbuffer``         float32 [1,H,W]     z-buffer depth (camera forward axis, scene
                                              units, ~1..30); 0 = invalid (sky)
``normal``                float32 [3,H,W]     unit normal in camera frame (x right,
                                              y up, z towards the viewer); (0,0,0) =
                                              invalid (sky)
``edge_texture``          float32 [1,H,W]     1 on object/face/texture/shadow borders,
                                              else 0 (-1 would mean ignore; unused here)
``saliency``              float32 [1,H,W]     1 on the nearest primitive, else 0
========================  ==================  ========================================

Batch format of ``make_loaders``: ``train_loaders[task]`` and ``val_loaders[task]`` are
``torch.utils.data.DataLoader`` objects yielding tuples ``(image, target)`` with
``image`` float32 ``[B,3,H,W]`` and ``target`` as in the table with a leading ``B``.
All task loaders of one split index the same rendered scenes (rendered once, cached in
memory as compact arrays). Train loaders shuffle with a seeded generator and drop the
last partial batch; validation loaders keep order and every sample.

Example:
    >>> from automtl.data.synthetic import make_loaders
    >>> train, val = make_loaders(("segment_semantic", "depth_zbuffer"), size=32,
    ...                           n_train=8, n_val=4, batch_size=4, seed=0)
    >>> image, target = next(iter(train["depth_zbuffer"]))
    >>> tuple(image.shape), tuple(target.shape)
    ((4, 3, 32, 32), (4, 1, 32, 32))
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from automtl.checks import check_int, check_ints, check_number, check_seed
from automtl.data._render import render, sample_scene
from automtl.data.loaders import TaskView, task_loaders
from automtl.data.tasks import IGNORE_INDEX, SYNTHETIC_CLASSES
from automtl.errors import ConfigError

__all__ = ["TASKS", "CLASSES", "NUM_CLASSES", "IGNORE_INDEX", "SyntheticScenes", "TaskView",
           "make_loaders", "render_sample"]

#: Tasks the synthetic scenes render, in a fixed order.
TASKS: tuple[str, ...] = ("segment_semantic", "depth_zbuffer", "normal", "edge_texture", "saliency")
#: Semantic classes (label value = index).
CLASSES: tuple[str, ...] = SYNTHETIC_CLASSES
NUM_CLASSES: int = len(CLASSES)

_SPLITS = {"train": 0, "val": 1, "test": 2}


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        h = w = size
    else:
        h, w = check_ints(size, "size", length=2)
    if h < 4 or w < 4:
        raise ConfigError(f"image size must be at least 4x4, got {h}x{w}", key="size")
    return h, w


def render_sample(seed: int, index: int, size: int | Sequence[int] = 64, *, split: str = "train",
                  noise: float = 0.01, max_objects: int = 6) -> dict[str, np.ndarray]:
    """Render sample ``index`` of ``split`` for ``seed`` as numpy arrays (image + all tasks)."""
    if split not in _SPLITS:
        raise ConfigError(f"unknown split; use one of {sorted(_SPLITS)}", key="split")
    h, w = _hw(size)
    rng = np.random.default_rng([int(seed), _SPLITS[split], int(index)])
    scene = sample_scene(rng, aspect=w / h, max_objects=max_objects)
    return render(scene, h, w, rng, noise=noise)


def _compact(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Small in-memory form: uint8 image/masks, int8 labels, float16 normals."""
    return {
        "image": np.round(sample["image"] * 255).astype(np.uint8),
        "segment_semantic": sample["segment_semantic"].astype(np.int8),
        "depth_zbuffer": sample["depth_zbuffer"].astype(np.float32),
        "normal": sample["normal"].astype(np.float16),
        "edge_texture": sample["edge_texture"].astype(np.uint8),
        "saliency": sample["saliency"].astype(np.uint8),
    }


def _to_tensor(key: str, arr: np.ndarray) -> torch.Tensor:
    if key == "image":
        return torch.from_numpy(arr).float().div_(255.0)
    if key == "segment_semantic":
        return torch.from_numpy(arr).long()
    if key == "normal":
        n = torch.from_numpy(arr).float()
        norm = (n * n).sum(dim=0, keepdim=True).sqrt()
        return torch.where(norm > 0.5, n / norm.clamp_min(1e-6), torch.zeros_like(n))
    return torch.from_numpy(arr).float()


class SyntheticScenes(Dataset):
    """``n`` synthetic scenes of one split; item ``i`` is a dict ``{"image": ..., task: ...}``.

    Samples are rendered on first access and kept in memory (compact dtypes), so later
    epochs only convert arrays to tensors. ``prerender()`` renders all of them at once.

    Args:
        n: number of samples.
        size: ``H`` (square) or ``(H, W)``.
        seed: data seed; with ``split`` and the index it fixes every pixel.
        split: ``"train"``, ``"val"`` or ``"test"`` (independent streams).
        tasks: which targets items carry (default: all of ``TASKS``).
        noise: std of the Gaussian pixel noise added to the image.
        max_objects: upper bound on primitives per scene (at least 3 are drawn).
    """

    def __init__(self, n: int, size: int | Sequence[int] = 64, *, seed: int = 0, split: str = "train",
                 tasks: Sequence[str] = TASKS, noise: float = 0.01, max_objects: int = 6) -> None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"synthetic scenes cannot render {unknown}; available: {list(TASKS)}",
                              key="tasks")
        if split not in _SPLITS:
            raise ConfigError(f"unknown split; use one of {sorted(_SPLITS)}", key="split")
        if n < 0:
            raise ConfigError(f"number of samples must be >= 0, got {n}", key="n")
        self.n = int(n)
        self.size = _hw(size)
        self.seed = int(seed)
        self.split = split
        self.tasks = tuple(tasks)
        self.noise = float(noise)
        self.max_objects = int(max_objects)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        """Cached compact numpy arrays of sample ``index`` (renders it on first use)."""
        if not 0 <= index < self.n:
            raise IndexError(f"sample {index} out of range for {self.n} samples")
        hit = self._cache.get(index)
        if hit is None:
            hit = _compact(render_sample(self.seed, index, self.size, split=self.split,
                                         noise=self.noise, max_objects=self.max_objects))
            self._cache[index] = hit
        return hit

    def prerender(self) -> SyntheticScenes:
        """Render every sample now (e.g. before forking loader workers); returns self."""
        for i in range(self.n):
            self.arrays(i)
        return self

    def get(self, index: int, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, target)`` of sample ``index`` for one task."""
        arr = self.arrays(index)
        return _to_tensor("image", arr["image"]), _to_tensor(task, arr[task])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        arr = self.arrays(index)
        out = {"image": _to_tensor("image", arr["image"])}
        for t in self.tasks:
            out[t] = _to_tensor(t, arr[t])
        return out


def make_loaders(tasks: Sequence[str] = TASKS, size: int | Sequence[int] = 64, n_train: int = 512,
                 n_val: int = 128, batch_size: int = 16, seed: int = 0, *, num_workers: int = 0,
                 noise: float = 0.01, max_objects: int = 6,
                 ) -> tuple[dict[str, DataLoader], dict[str, DataLoader]]:
    """Train and validation loaders per task over synthetic scenes (format: module docs).

    Args:
        tasks: task names from ``TASKS``.
        size: ``H`` or ``(H, W)`` of every image.
        n_train, n_val: samples per split (shared by all tasks of the split).
        batch_size: batch size of every loader (train drops the last partial batch).
        seed: data seed (scenes) and shuffle seed (train order).
    """
    tasks = tuple(tasks)
    if not tasks:
        raise ConfigError("at least one task is required", key="tasks")
    _hw(size)
    check_int(n_train, "n_train", lo=1)
    check_int(n_val, "n_val", lo=0)
    check_int(batch_size, "batch_size", lo=1)
    check_seed(seed)
    check_int(num_workers, "num_workers", lo=0)
    check_int(max_objects, "max_objects", lo=0)
    check_number(noise, "noise", lo=0)
    if n_train < batch_size:
        raise ConfigError(f"n_train={n_train} is smaller than batch_size={batch_size}; "
                          "the train loaders would be empty", key="n_train")
    train = SyntheticScenes(n_train, size, seed=seed, split="train", tasks=tasks, noise=noise,
                            max_objects=max_objects).prerender()
    val = SyntheticScenes(n_val, size, seed=seed, split="val", tasks=tasks, noise=noise,
                          max_objects=max_objects).prerender()
    return task_loaders(train, val, tasks, batch_size=batch_size, seed=seed, num_workers=num_workers)
