"""The one resume path (automtl.train.resume) shared by the Trainer phases and train_supernet."""
from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from train_helpers import make_loaders, mse_criteria, mse_metrics, tiny_model

from automtl.errors import CheckpointError
from automtl.io import atomic_save, safe_load
from automtl.spaces.base import SupernetSpace
from automtl.train.fingerprint import Fingerprint
from automtl.train.resume import FORMAT, Checkpointer, RandomState, TrainingState, load_state, save_state
from automtl.train.streams import CycleStream, TaskStream
from automtl.train.supernet import train_supernet

TASKS = ("a", "b")


class _GatedNet(nn.Module):
    """A trunk whose active width is a gene, one linear head per task; dropout uses the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in TASKS})
        self.width = 4

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        h = torch.relu(self.trunk(x))
        h = torch.cat([h[:, :self.width], torch.zeros_like(h[:, self.width:])], dim=1)
        return self.heads[task](F.dropout(h, 0.2, self.training))


class _GateSpace(SupernetSpace):
    """A one-gene supernet space: the trunk width (1, 2 or 4)."""

    name = "gate"
    tasks = TASKS

    def sample(self, rng):
        return {"w": rng.choice((1, 2, 4))}

    def mutate(self, candidate, rng, *, p_layer=0.2, p_global=0.4):
        return self.sample(rng)

    def crossover(self, a, b, rng):
        return dict(a)

    def count_params(self, candidate):
        n = 4 * candidate["w"]
        return {"a": n, "b": n, "total": n}

    def validate(self, candidate):
        pass

    def param_range(self):
        return 4, 16

    def largest(self):
        return {"w": 4}

    def smallest(self):
        return {"w": 1}

    def build_supernet(self, **kwargs):
        return _GatedNet()

    def activate(self, net, candidate):
        net.width = candidate["w"]

    def forward(self, net, x, task):
        return net(x, task)


def _loaders(n=16, batch=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return {t: DataLoader(TensorDataset(x, x.sum(1, keepdim=True) * (i + 1)), batch_size=batch)
            for i, t in enumerate(TASKS)}


def _state(model=None, steps=5, run="demo", seed=0):
    torch.manual_seed(seed)
    model = model or nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    streams = {t: TaskStream(dl, seed=1, name=t) for t, dl in _loaders().items()}
    return TrainingState(run, steps, model, optimizers={"net": opt},
                         schedulers={"net": torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)},
                         streams={"train": streams}, extras={"sampler": RandomState(random.Random(seed))},
                         values={"tau": 5.0})


def _advance(state, n):
    for _ in range(n):
        x, y = state.streams["train"]["a"].next()
        opt = state.optimizers["net"]
        opt.zero_grad()
        F.mse_loss(state.model(x + 0.01 * torch.randn_like(x)), y).backward()
        opt.step()
        state.schedulers["net"].step()
        state.extras["sampler"].rng.random()
        state.step += 1
        state.values["tau"] *= 0.5
        state.history.append(float(state.step))


def test_state_round_trip_restores_every_part(tmp_path):
    a = _state()
    _advance(a, 3)
    path = save_state(a, tmp_path / "s.pt")
    assert a.last_checkpoint == path and safe_load(path)["format"] == FORMAT
    b = _state(seed=9)
    load_state(b, path)
    assert b.last_checkpoint == path
    assert (b.step, b.complete, b.values, b.history) == (3, False, {"tau": 0.625}, [1.0, 2.0, 3.0])
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert b.schedulers["net"].state_dict() == a.schedulers["net"].state_dict()
    # the global RNG, the sampler and the data stream all continue where the first run was
    _advance(a, 2)
    torch.manual_seed(123)
    load_state(b, path)
    _advance(b, 2)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.extras["sampler"].rng.random() == b.extras["sampler"].rng.random()
    assert torch.equal(a.streams["train"]["a"].next()[0], b.streams["train"]["a"].next()[0])


def test_wrong_shape_names_the_key_and_both_shapes_and_changes_nothing(tmp_path):
    path = save_state(_state(), tmp_path / "s.pt")
    other = _state(model=nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)))
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"'0\.weight' is \(4, 3\) in the checkpoint but \(5, 3\) in the "
                                              r"model.*'2\.weight' is \(1, 4\) in the checkpoint but \(1, 5\)"):
        load_state(other, path)
    assert all(torch.equal(v, before[k]) for k, v in other.model.state_dict().items())
    assert other.last_checkpoint is None and other.values == {"tau": 5.0}


def test_missing_unexpected_keys_and_optimizer_groups_are_named(tmp_path):
    path = save_state(_state(), tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['3\.weight', '3\.bias'\].*"
                                              r"unexpected keys \['2\.weight', '2\.bias'\]"):
        load_state(_state(model=nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Identity(), nn.Linear(4, 1))),
                   path)
    two_groups = _state()
    model = two_groups.model
    two_groups.optimizers["net"] = torch.optim.AdamW([{"params": model[0].parameters()},
                                                      {"params": model[2].parameters()}])
    with pytest.raises(CheckpointError, match=r"optimizer 'net' has parameter groups of sizes \[2, 2\] "
                                              r"but the checkpoint's has \[4\]"):
        load_state(two_groups, path)


def test_other_run_other_length_missing_parts_and_foreign_files_are_refused(tmp_path):
    path = save_state(_state(steps=1), tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="checkpoint of 'demo', a 1-step run; this is 'demo', a 2-step run"):
        load_state(_state(steps=2), path)
    with pytest.raises(CheckpointError, match="this is 'other', a 1-step run"):
        load_state(_state(steps=1, run="other"), path)
    more = _state(steps=1)
    more.streams["train"]["c"] = TaskStream(_loaders()["a"], seed=0, name="c")
    more.extras["weighting"] = nn.Linear(1, 1)
    with pytest.raises(CheckpointError, match=r"holds no state for extras \['weighting'\]"):
        load_state(more, path)
    del more.extras["weighting"]
    with pytest.raises(CheckpointError, match=r"no data position for task\(s\) \['c'\] \(stream 'train'\)"):
        load_state(more, path)
    atomic_save({"it": 3, "model": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="old.pt: not a training-state checkpoint"):
        load_state(_state(), tmp_path / "old.pt")


def test_cycle_stream_of_a_plain_iterable_has_no_position():
    stream = CycleStream([1, 2])
    assert [stream.next() for _ in range(3)] == [1, 2, 1] and stream.state_dict() is None
    stream.load_state_dict(None)
    with pytest.raises(CheckpointError, match="not a DataLoader"):
        stream.load_state_dict({"epoch": 0, "position": 1})


class _Killed(Exception):
    pass


def _supernet_run(space, ckpt=None, *, die_after=0, steps=5):
    torch.manual_seed(0)
    net = space.build_supernet()
    calls = [0]

    def crit(out, y):
        calls[0] += 1
        if die_after and calls[0] > die_after:
            raise _Killed
        return F.mse_loss(out, y)

    hist = train_supernet(net, space, _loaders(), steps=steps, sampling="sandwich", n_random=1, seed=3,
                          device="cpu", criteria={t: crit for t in TASKS}, checkpoint=ckpt, checkpoint_every=2)
    return net, hist


def test_supernet_resume_through_the_shared_module_matches_an_uninterrupted_run(tmp_path):
    space = _GateSpace()
    ref, full = _supernet_run(space)
    ckpt = tmp_path / "supernet.pt"
    with pytest.raises(_Killed):  # 6 criterion calls a step: dies in step 4, after the step-2 checkpoint
        _supernet_run(space, ckpt, die_after=3 * 3 * len(TASKS) + 1)
    assert safe_load(ckpt)["step"] == 2
    torch.manual_seed(99)
    net, resumed = _supernet_run(space, ckpt)
    assert resumed == pytest.approx(full, rel=1e-6)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, msg=k)
    done = safe_load(ckpt)
    assert done["complete"] and done["run"] == "supernet" and done["history"] == pytest.approx(full)
    with pytest.raises(CheckpointError, match="'supernet', a 5-step run; this is 'supernet', a 6-step run"):
        _supernet_run(space, ckpt, steps=6)


def test_trainer_and_supernet_share_the_layout_and_refuse_each_other(tmp_path):
    from automtl.train import Trainer

    _supernet_run(_GateSpace(), tmp_path / "supernet.pt", steps=2)
    train, val = make_loaders()
    tr = Trainer(tiny_model(), train, val, mse_criteria(), mse_metrics(), work_dir=tmp_path / "t",
                 progress=False, tensorboard=False, weighting="uncertainty")
    tr.pre_train(2, 1e-2)
    phase = safe_load(tmp_path / "t" / "checkpoints" / "pre_train_latest.pt")
    supernet = safe_load(tmp_path / "supernet.pt")
    assert set(phase) == set(supernet) and phase["format"] == supernet["format"] == FORMAT
    assert set(phase["extras"]) == {"weighting"} and set(supernet["extras"]) == {"sampler"}
    shutil.copy(tmp_path / "supernet.pt", tmp_path / "t" / "checkpoints" / "pre_train_latest.pt")
    with pytest.raises(CheckpointError, match="checkpoint of 'supernet', a 2-step run; this is 'pre_train'"):
        tr.pre_train(2, 1e-2, resume=True)
    tr.close()


def test_checkpointer_names_its_file_and_records_the_last_good_one(tmp_path):
    saver = Checkpointer(tmp_path / "c" / "latest.pt")
    state = _state()
    assert not saver.exists()
    assert saver.save(state) == tmp_path / "c" / "latest.pt" == state.last_checkpoint
    assert saver.exists()
    fresh = _state(seed=4)
    saver.restore(fresh)
    assert fresh.last_checkpoint == saver.path


def test_supernet_resume_refuses_other_settings_and_flushes_its_history(tmp_path):
    space, ckpt, curve = _GateSpace(), tmp_path / "supernet.pt", tmp_path / "history.json"

    def run(lr):
        torch.manual_seed(0)
        return train_supernet(space.build_supernet(), space, _loaders(), steps=2, lr=lr, seed=3, device="cpu",
                              criteria={t: F.mse_loss for t in TASKS}, checkpoint=ckpt, checkpoint_every=1,
                              history_path=curve,
                              fingerprint=Fingerprint.of({"supernet_train": {"lr": lr}}))

    history = run(0.1)
    assert json.loads(curve.read_text()) == history
    with pytest.raises(CheckpointError, match="written with supernet_train.lr=0.1, this run has supernet_train.lr=0.2"):
        run(0.2)
