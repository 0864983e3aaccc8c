"""What a resume checks: the run's settings (fingerprint), the checkpoint's layout, shapes and
curves (history.json goes on from the checkpoint, no point lost or repeated)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from train_helpers import TASKS, make_loaders, mse_criteria, mse_metrics, tiny_model

from automtl.errors import CheckpointError
from automtl.io import atomic_save, safe_load
from automtl.train import Trainer
from automtl.train.fingerprint import Fingerprint, flatten
from automtl.train.resume import TrainingState, load_state, save_state


def _trainer(work, model=None, criteria=None, **kw):
    train, val = make_loaders()
    return Trainer(model or tiny_model(), train, val, criteria or mse_criteria(), mse_metrics(), work_dir=work,
                   progress=False, tensorboard=False, checkpoint_iters=2, **kw)


def _state(fingerprint=None, model=None):
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    return TrainingState("demo", 3, model, optimizers={"net": opt}, fingerprint=fingerprint)


def _stepped(state):
    """``state`` after one optimiser step (so the optimiser has per-parameter state)."""
    state.model(torch.randn(2, 3)).sum().backward()
    state.optimizers["net"].step()
    return state


def test_flatten_walks_dicts_and_keeps_other_values_as_json():
    assert flatten({"data": {"size": 32, "scale": (0.5, 1.5)}, "tasks": ["a"], "empty": {}}) == {
        "data.size": "32", "data.scale": "[0.5, 1.5]", "tasks": '["a"]', "empty": "{}"}


def test_fingerprint_names_each_differing_key_and_skips_the_ones_that_may_change():
    saved = Fingerprint.of({"data": {"size": 32, "root": "a"}, "trainer": {"print_iters": 5}, "seed": 0}).values
    ours = Fingerprint.of({"data": {"size": 64, "root": "b"}, "trainer": {"print_iters": 1}, "model": {"w": 2}},
                          may_change=("trainer.print_iters",))
    assert [k for k, _, _ in ours.differences(saved)] == ["data.root", "data.size", "model.w", "seed"]
    with pytest.raises(CheckpointError, match=r"ck\.pt: checkpoint was written with data\.root=\"a\", "
                                              r"data\.size=32, model\.w=<unset>, seed=0, this run has "
                                              r"data\.root=\"b\", data\.size=64, model\.w=2, seed=<unset>; .*"
                                              r"--allow-changed data\.root data\.size model\.w seed"):
        ours.check(saved, "ck.pt")
    relaxed = Fingerprint(ours.values, ("data", "model.*", "seed", "trainer.print_iters"))  # prefix, glob, keys
    relaxed.check(saved, "ck.pt")
    with pytest.raises(CheckpointError, match="its 'fingerprint' is a list"):
        ours.check([], "ck.pt")


def test_a_phase_fingerprint_leaves_out_the_phases_after_it():
    fp = Fingerprint.of({"data": {"size": 8}, "pre_train": {"iters": 2}, "sample": {"n": 3},
                         "post_train": {"iters": 4}}, stages=("pre_train", "sample", "post_train"))
    assert set(fp.upto("pre_train").values) == {"data.size", "pre_train.iters"}
    assert set(fp.upto("sample").values) == {"data.size", "pre_train.iters", "sample.n"}
    assert fp.upto("post_train").values == fp.values == fp.upto("not_a_stage").values


def test_a_state_with_a_fingerprint_refuses_other_settings_and_changes_nothing(tmp_path):
    path = save_state(_state(Fingerprint.of({"data": {"size": 32}})), tmp_path / "s.pt")
    assert safe_load(path)["fingerprint"] == {"data.size": "32"}
    other = _state(Fingerprint.of({"data": {"size": 64}}))
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(CheckpointError, match="checkpoint was written with data.size=32, this run has data.size=64"):
        load_state(other, path)
    assert all(torch.equal(v, before[k]) for k, v in other.model.state_dict().items()) and other.step == 0
    load_state(_state(Fingerprint.of({"data": {"size": 64}}, may_change=("data.size",))), path)
    load_state(_state(), path)  # a state without fingerprint (the plain API) checks none


def test_a_checkpoint_without_model_or_with_a_non_dict_model_is_named(tmp_path):
    ck = safe_load(save_state(_state(), tmp_path / "s.pt"))
    for broken, message in ((dict(ck, model=None), "its 'model' is of type NoneType, expected dict"),
                            ({k: v for k, v in ck.items() if k != "model"}, "has no 'model' entry"),
                            (dict(ck, step="3"), "its 'step' is of type str, expected int"),
                            (dict(ck, optimizers=[]), "its 'optimizers' is of type list")):
        atomic_save(broken, tmp_path / "b.pt")
        with pytest.raises(CheckpointError, match=message):
            load_state(_state(), tmp_path / "b.pt")
    tr = _trainer(tmp_path / "t")
    atomic_save({"model": [1, 2]}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"w\.pt: the weights are a list, not a state dict"):
        tr.load_weights(tmp_path / "w.pt")
    tr.close()


def test_right_keys_with_wrong_shapes_or_kinds_are_named(tmp_path):
    ck = safe_load(save_state(_stepped(_state()), tmp_path / "s.pt"))
    model = dict(ck["model"], **{"0.bias": [0.0] * 4})
    atomic_save(dict(ck, model=model), tmp_path / "kind.pt")
    with pytest.raises(CheckpointError, match=r"'0\.bias' is a list in the checkpoint but a \(4,\) tensor"):
        load_state(_state(), tmp_path / "kind.pt")
    opt = ck["optimizers"]["net"]
    opt["state"][0]["exp_avg"] = torch.zeros(5, 3)
    atomic_save(ck, tmp_path / "opt.pt")
    with pytest.raises(CheckpointError, match=r"optimizer 'net' state does not fit: 'exp_avg' of '0\.weight' is "
                                              r"\(5, 3\) but the parameter is \(4, 3\)"):
        load_state(_state(), tmp_path / "opt.pt")


def test_a_module_extra_of_other_shapes_is_named(tmp_path):
    state = _state()
    state.extras["weighting"] = nn.Linear(2, 1)
    path = save_state(state, tmp_path / "s.pt")
    other = _state()
    other.extras["weighting"] = nn.Linear(3, 1)
    with pytest.raises(CheckpointError, match=r"\(extras 'weighting'\): does not fit the model; shapes differ: "
                                              r"'weight' is \(1, 2\) in the checkpoint but \(1, 3\)"):
        load_state(other, path)


def _curves(work):
    return json.loads((work / "history.json").read_text())


def test_history_is_written_with_each_checkpoint_and_a_resume_continues_the_checkpoints_curve(tmp_path):
    full = _trainer(tmp_path / "full")
    full.pre_train(6, 1e-2)
    full.close()
    seen, calls = {}, {"n": 0}

    def dying(out, y):  # two criterion calls an iteration: dies in iteration 5, after the iteration-4 checkpoint
        calls["n"] += 1
        if calls["n"] == 9:
            seen.update(_curves(tmp_path / "cut"))
            raise KeyboardInterrupt
        return torch.nn.functional.mse_loss(out, y)

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "cut", criteria={t: dying for t in TASKS}).pre_train(6, 1e-2)
    assert seen and all([p[0] for p in points] == [1, 2, 3, 4] for points in seen.values())
    # a kill between the checkpoint and history.json: the file lags (or is ahead); the checkpoint decides
    (tmp_path / "cut" / "history.json").write_text(json.dumps({t: p[:1] for t, p in seen.items()}))
    resumed = _trainer(tmp_path / "cut", model=tiny_model(seed=5))
    resumed.pre_train(6, 1e-2, resume=True)
    resumed.close()
    expected = _curves(tmp_path / "full")
    assert all([p[0] for p in points] == list(range(1, 7)) for points in expected.values())
    assert _curves(tmp_path / "cut") == expected


def test_a_fresh_phase_drops_the_points_of_an_earlier_attempt(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps({"pre_train/stale": [[9, 1.0]], "other/x": [[1, 2.0]]}))
    tr = _trainer(tmp_path)
    tr.pre_train(2, 1e-2)
    tr.close()
    curves = _curves(tmp_path)
    assert "pre_train/stale" not in curves and curves["other/x"] == [[1, 2.0]]


def test_trainer_phases_carry_their_own_fingerprint(tmp_path):
    fp = Fingerprint.of({"data": {"size": 8}, "pre_train": {"lr": 0.01}, "post_train": {"lr": 0.1}},
                        stages=("pre_train", "post_train"))
    tr = _trainer(tmp_path, fingerprint=fp)
    tr.pre_train(2, 1e-2)
    tr.close()
    assert safe_load(tmp_path / "checkpoints" / "pre_train_latest.pt")["fingerprint"] == {
        "data.size": "8", "pre_train.lr": "0.01"}
    later = Fingerprint.of({"data": {"size": 8}, "pre_train": {"lr": 0.01}, "post_train": {"lr": 0.5}},
                           stages=("pre_train", "post_train"))
    _trainer(tmp_path, fingerprint=later).pre_train(2, 1e-2, resume=True)  # a later phase may change
    changed = Fingerprint.of({"data": {"size": 9}, "pre_train": {"lr": 0.01}}, stages=("pre_train",))
    with pytest.raises(CheckpointError, match="pre_train_latest.pt: checkpoint was written with data.size=8"):
        _trainer(tmp_path, fingerprint=changed).pre_train(2, 1e-2, resume=True)
