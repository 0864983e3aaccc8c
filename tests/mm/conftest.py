"""OpenMMLab tests: every test here is marked ``mm`` and skipped when the ``mm`` extra is absent.

``tiny_sets`` writes the tiny ImageNet / COCO / ADE20K sets once per session (64×64, 8 train and
4 val images each) from the synthetic scenes.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

MM_MISSING = [m for m in ("mmcv", "mmpretrain", "mmdet", "mmseg") if importlib.util.find_spec(m) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.mm)
            if MM_MISSING:
                item.add_marker(pytest.mark.skip(reason=f"mm extra not installed ({MM_MISSING})"))


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from automtl.mm.tiny_sets import make_tiny_datasets

    return make_tiny_datasets(tmp_path_factory.mktemp("tiny_sets"), n_train=8, n_val=4, size=64, seed=0)
