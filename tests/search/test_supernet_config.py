"""Supernet training for search: resumable checkpoints and the ``tools/train.py`` entry."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from automtl.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("segment_semantic", "depth_zbuffer")
SPACE = dict(type="vit_mvt", preset=None, name="micro", tasks=TASKS,
             num_outputs=dict(segment_semantic=5, depth_zbuffer=1),
             depths=(1, 2), embeds=(16, 24), heads=(1,), mlp_ratios=(2.0,), img_size=32)


@pytest.fixture(scope="module")
def loaders():
    from automtl.data.synthetic import make_loaders

    return make_loaders(TASKS, size=32, n_train=24, n_val=8, batch_size=8, seed=0)[0]


def _fresh():
    from automtl.registry import SPACES, build

    space = build(SPACES, SPACE, key="space")
    torch.manual_seed(0)
    return space, space.build_supernet()


class _Killed(Exception):
    pass


def test_interrupted_supernet_training_resumes_to_the_same_weights(loaders, tmp_path):
    from automtl.train.supernet import train_supernet

    space, net = _fresh()
    full = train_supernet(net, space, loaders, steps=5, sampling="sandwich", n_random=1, seed=3, device="cpu")
    reference = {k: v.clone() for k, v in net.state_dict().items()}

    ckpt = tmp_path / "ckpt.pt"
    space, net = _fresh()
    forward, calls = space.forward, [0]

    def dying_forward(n, x, task):  # killed in the middle of step 4 (after the step-3 checkpoint)
        calls[0] += 1
        if calls[0] > 3 * 3 * len(TASKS) + 2:
            raise _Killed
        return forward(n, x, task)

    space.forward = dying_forward
    with pytest.raises(_Killed):
        train_supernet(net, space, loaders, steps=5, sampling="sandwich", n_random=1, seed=3,
                       device="cpu", checkpoint=ckpt, checkpoint_every=3)
    assert torch.load(ckpt, weights_only=True)["step"] == 3

    space, net = _fresh()  # a new process: fresh weights, then the checkpoint
    torch.manual_seed(123)  # the global RNG state is restored from the checkpoint, not reused
    resumed = train_supernet(net, space, loaders, steps=5, sampling="sandwich", n_random=1, seed=3,
                             device="cpu", checkpoint=ckpt, checkpoint_every=3)
    assert resumed == pytest.approx(full, rel=1e-6)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, reference[key], msg=key)


def test_checkpoint_of_another_run_length_is_refused(loaders, tmp_path):
    from automtl.train.supernet import train_supernet

    space, net = _fresh()
    ckpt = tmp_path / "ckpt.pt"
    train_supernet(net, space, loaders, steps=1, seed=0, device="cpu", checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="1-step run"):
        train_supernet(net, space, loaders, steps=2, seed=0, device="cpu", checkpoint=ckpt)


def test_supernet_config_errors_are_typed(tmp_path):
    from automtl.cli.run_supernet import run_supernet_config

    with pytest.raises(ConfigError, match="key 'sapce': unknown top-level key"):
        run_supernet_config({"space": SPACE, "supernet_train": {"steps": 1}, "sapce": 1}, work_dir=tmp_path)
    with pytest.raises(ConfigError, match="supernet_train.steps"):
        run_supernet_config({"space": SPACE, "supernet_train": {}}, work_dir=tmp_path)
    with pytest.raises(ConfigError, match="supernet_train.sampling"):
        run_supernet_config({"space": SPACE, "supernet_train": {"steps": 1, "sampling": "all"}},
                            work_dir=tmp_path)
    with pytest.raises(ConfigError, match="supernet_train.steps.*got 2.5"):
        run_supernet_config({"space": SPACE, "supernet_train": {"steps": 2.5}}, work_dir=tmp_path)
    with pytest.raises(ConfigError, match="data.sz"):
        run_supernet_config({"space": SPACE, "supernet_train": {"steps": 1}, "data": {"sz": 3}}, work_dir=tmp_path)


@pytest.mark.slow
def test_tools_train_trains_a_supernet_that_search_can_load(tmp_path):
    cfg = tmp_path / "supernet.py"
    cfg.write_text(f"seed = 0\nspace = {SPACE!r}\n"
                   "data = dict(size=32, n_train=16, n_val=8, batch_size=8)\n"
                   "supernet_train = dict(steps=2, sampling='uniform', checkpoint_every=1)\n")
    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(cfg), "--work-dir", str(work),
                           "--device", "cpu"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "supernet.pt").is_file() and (work / "checkpoints" / "supernet_latest.pt").is_file()

    from automtl.registry import SPACES, build
    from automtl.search.supernet_evaluator import build_supernet_evaluator

    space = build(SPACES, SPACE, key="space")
    evaluator = build_supernet_evaluator(space, checkpoint=str(work / "supernet.pt"),
                                         data=dict(size=32, n_train=16, n_val=8, batch_size=8),
                                         n_val_batches=1, device="cpu")
    scores = evaluator.evaluate(space.sample(__import__("random").Random(0)))
    assert set(scores) == set(TASKS)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "supernet").glob("*.py")), ids=lambda p: p.stem)
def test_shipped_supernet_configs_build_their_space(path, monkeypatch):
    from automtl.config import config_kind, load_config
    from automtl.registry import SPACES, build

    cfg = load_config(path)
    assert config_kind(cfg) == "supernet" and cfg["supernet_train"]["steps"] > 0
    monkeypatch.chdir(ROOT)  # configs name backbones relative to the repository root
    space = build(SPACES, cfg["space"], key="space")
    assert space.param_range()[0] > 0
