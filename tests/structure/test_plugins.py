"""A user's own backbone, dataset and search space, registered in their own file and named
in a config through ``custom_imports``, work with no edit to the package."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

PARTS = '''
import torch
from torch import nn

from automtl.data.synthetic import make_loaders
from automtl.registry import BACKBONES, DATASETS, SPACES
from automtl.spaces.toy import LayeredToySpace


@BACKBONES.register_module("UserNet")
class UserNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


@DATASETS.register_module("user_scenes")
def user_scenes(tasks, *, n: int = 8, side: int = 16, seed: int = 0):
    return make_loaders(tasks, size=side, n_train=n, n_val=n // 2, batch_size=4, seed=seed)


@SPACES.register_module("user_space")
class UserSpace(LayeredToySpace):
    name = "user_space"
'''

TRAIN = '''
custom_imports = dict(imports=["user_parts"], allow_failed_imports=False)
tasks = ["segment_semantic", "depth_zbuffer"]
data = dict(type="user_scenes", n=8, side=16)
model = dict(backbone=dict(type="UserNet", width=8), head=dict(type="ConvHead", mid_channels=8),
             input_shape=(1, 3, 16, 16))
trainer = dict(checkpoint_iters=0, print_iters=1, progress=False, tensorboard=False)
pre_train = dict(iters=2)
post_train = dict(iters=2)
'''

SEARCH = '''
custom_imports = dict(imports=["user_parts"], allow_failed_imports=False)
space = dict(type="user_space", depths=(2, 3), embeds=(16, 24), ratios=(2, 3))
evaluator = dict(type="toy")
search = dict(budget=(1000, 40000), population=6, top_k=2, n_mutations=3, n_crossovers=3,
              generations=2)
storage = "memory"
'''


@pytest.fixture()
def user_dir(tmp_path):
    (tmp_path / "user_parts.py").write_text(textwrap.dedent(PARTS))
    return tmp_path


def _env(user_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(user_dir), env.get("PYTHONPATH")]))
    return env


def test_user_backbone_and_dataset_train_from_a_config(user_dir):
    cfg = user_dir / "train_cfg.py"
    cfg.write_text(TRAIN)
    work = user_dir / "work"
    proc = subprocess.run([sys.executable, "-m", "automtl", "train", str(cfg), "--work-dir", str(work)],
                          capture_output=True, text=True, env=_env(user_dir), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((work / "results.json").read_text())["results"]
    assert set(results) >= {"segment_semantic", "depth_zbuffer"}


def test_user_space_builds_from_a_search_config(user_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(user_dir))
    from automtl.config import load_config
    from automtl.registry import SPACES, build

    cfg = user_dir / "search_cfg.py"
    cfg.write_text(SEARCH)
    loaded = load_config(cfg)
    space = build(SPACES, loaded["space"], key="space")
    assert type(space).__name__ == "UserSpace"
    assert space.count_params(space.largest())["total"] > space.count_params(space.smallest())["total"]


def test_unknown_type_lists_the_registered_ones():
    from automtl.errors import ConfigError
    from automtl.registry import BACKBONES, build

    with pytest.raises(ConfigError, match=r"model\.backbone\.type.*TinyResNet.*custom_imports"):
        build(BACKBONES, {"type": "NoSuchNet"}, key="model.backbone")


def test_unknown_setting_names_its_dotted_key():
    from automtl.errors import ConfigError
    from automtl.registry import BACKBONES, build

    with pytest.raises(ConfigError, match=r"model\.backbone\.widht.*accepted.*widths"):
        build(BACKBONES, {"type": "TinyResNet", "widht": (8,)}, key="model.backbone")


def test_openmmlab_root_registries_reach_automtl_parts():
    from mmengine.registry import DATASETS as MM_DATASETS
    from mmengine.registry import MODELS as MM_MODELS

    from automtl.supernet.registration import build_mtl_model

    assert MM_MODELS.get("automtl.MTLModel") is build_mtl_model
    assert MM_DATASETS.get("automtl.synthetic") is not None


def test_building_the_toy_search_imports_no_torch():
    code = ("from automtl.registry import SPACES, EVALUATORS, FITNESS, build\n"
            "s = build(SPACES, dict(type='toy_layered'), key='space')\n"
            "build(EVALUATORS, dict(type='toy'), s, key='evaluator')\n"
            "build(FITNESS, dict(type='t_score'), key='fitness')\n"
            "import sys; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
