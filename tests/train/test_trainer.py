"""Trainer mechanics on the real MTLModel: phases, alternation, τ, NaN handling, logging."""
from __future__ import annotations

import json
import math

import pytest
import torch
from train_helpers import TASKS, make_loaders, mse_criteria, mse_metrics, tiny_model

from automtl.errors import CheckpointError, ConfigError, ModelError, TrainingError, UnknownTaskError
from automtl.supernet import Policy
from automtl.train import Trainer


def _trainer(tmp_path, model=None, criteria=None, **kw):
    train, val = make_loaders()
    kw.setdefault("progress", False)
    return Trainer(model or tiny_model(), train, val, criteria or mse_criteria(), mse_metrics(),
                   work_dir=tmp_path, **kw)


def test_criteria_task_without_head_is_rejected(tmp_path):
    crit = dict(mse_criteria(), c=torch.nn.functional.mse_loss)
    train, val = make_loaders(("a", "b", "c"))
    with pytest.raises(UnknownTaskError, match="'c'"):
        Trainer(tiny_model(), train, val, crit, None, work_dir=tmp_path)


def test_missing_loader_and_bad_lambda_are_named(tmp_path):
    train, val = make_loaders()
    del train["b"]
    with pytest.raises(ConfigError, match=r"train_loaders.*\['b'\]"):
        Trainer(tiny_model(), train, val, mse_criteria(), None, work_dir=tmp_path)
    tr = _trainer(tmp_path)
    with pytest.raises(ConfigError, match="'zz'"):
        tr.pre_train(1, 1e-3, loss_lambda={"zz": 1.0})


def test_three_phases_train_and_log(tmp_path):
    tr = _trainer(tmp_path, print_iters=2, val_iters=4, checkpoint_iters=3)
    before = tr.validate("pre")["a"]["mse"]
    w = tr.pre_train(12, 1e-2)
    assert w == tmp_path / "pre_train.pt" and w.is_file()
    assert tr.validate("pre")["a"]["mse"] < before
    tr.alter_train_with_reg(8, (2, 2), network_lr=1e-2, loss_lambda={"a": 1, "b": 1, "policy": 5e-4})
    policy = tr.model.sample_policy(seed=0)
    policy.save(tmp_path / "p.json")
    out = tr.post_train(6, 1e-2, reload=str(tmp_path / "p.json"), save_path=tmp_path / "final")
    assert out == tmp_path / "final" / "post_train.pt"
    res = tr.validate("fixed")
    assert set(res) == set(TASKS) and all(math.isfinite(res[t]["mse"]) for t in TASKS)
    assert tr.policy == Policy.load(tmp_path / "post_train_policy.json", model=tr.model)
    tr.close()
    log = (tmp_path / "train.log").read_text()
    assert "pre_train iter 12/12" in log and "post_train: done" in log and "val iter 4" in log
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist["pre_train/loss/a"]) == 12 and "alter_train_with_reg/policy_reg" in hist
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert json.loads((tmp_path / "trainer_config.json").read_text())["tasks"] == list(TASKS)
    ck = torch.load(tmp_path / "checkpoints" / "post_train_latest.pt", weights_only=True)
    assert ck["complete"] and ck["step"] == 6


def test_alternation_counts_tau_decay_and_separate_splits(tmp_path):
    train, val = make_loaders()
    model = tiny_model()
    steps: list[tuple[str, str, tuple[int, ...]]] = []

    def criterion(task):
        ds = train[task].dataset

        def loss(out, y):
            kind = "policy" if not next(model.weight_parameters()).requires_grad else "weights"
            assert model.logits.requires_grad == (kind == "policy")
            steps.append((kind, task, tuple(ds.log[-len(y):])))
            return torch.nn.functional.mse_loss(out, y)
        return loss

    tr = Trainer(model, train, val, {t: criterion(t) for t in TASKS}, mse_metrics(), work_dir=tmp_path,
                 progress=False)
    logits0 = model.logits.detach().clone()
    tr.alter_train_with_reg(10, (2, 3), network_lr=1e-2, policy_lr=0.1)
    kinds = [k for k, t, _ in steps if t == "a"]
    assert kinds == ["weights"] * 3 + ["policy"] * 2 + ["weights"] * 3 + ["policy"] * 2
    assert tr.tau == pytest.approx(5.0 * 0.965 ** 2)
    assert not torch.equal(model.logits.detach(), logits0)
    assert model.logits.requires_grad and all(p.requires_grad for p in model.weight_parameters())
    for task in TASKS:
        w = {i for k, t, idx in steps if t == task and k == "weights" for i in idx}
        p = {i for k, t, idx in steps if t == task and k == "policy" for i in idx}
        assert w and p and not (w & p)
    ck = torch.load(tmp_path / "checkpoints" / "alter_train_with_reg_latest.pt", weights_only=True)
    assert ck["values"]["tau"] == pytest.approx(tr.tau)
    assert int(ck["optimizers"]["policy"]["state"][0]["step"]) == 4


def test_tau_decay_every_n_iterations(tmp_path):
    tr = _trainer(tmp_path)
    tr.alter_train_with_reg(6, (1, 1), network_lr=1e-3, init_tau=2.0, tau_decay=0.5, tau_decay_every=3)
    assert tr.tau == pytest.approx(0.5)


def test_nan_loss_stops_with_iteration_and_task_and_keeps_checkpoint(tmp_path):
    calls = {"n": 0}

    def bad(out, y):
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(out, y)
        return loss * float("nan") if calls["n"] == 7 else loss

    tr = _trainer(tmp_path, criteria={"a": torch.nn.functional.mse_loss, "b": bad}, checkpoint_iters=2)
    with pytest.raises(TrainingError, match=r"task 'b' is nan at iteration 7.*pre_train_latest\.pt"):
        tr.pre_train(10, 1e-2)
    ck = torch.load(tmp_path / "checkpoints" / "pre_train_latest.pt", weights_only=True)
    assert ck["step"] == 6 and not ck["complete"]
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert not (tmp_path / "pre_train.pt").exists()


def test_nan_metric_stops_validation_naming_task(tmp_path):
    tr = _trainer(tmp_path)

    class NanMetric:
        def reset(self):
            pass

        def update(self, out, y):
            pass

        def compute(self):
            return {"rmse": float("nan")}

    tr.metrics["b"] = NanMetric()
    with pytest.raises(TrainingError, match="metric 'rmse' of task 'b' is nan at iteration 2"):
        tr.validate("pre", iteration=2)


def test_resume_of_completed_phase_loads_its_weights(tmp_path):
    tr = _trainer(tmp_path)
    tr.pre_train(3, 1e-2)
    state = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr2 = _trainer(tmp_path, model=tiny_model(seed=5))
    tr2.pre_train(3, 1e-2, resume=True)
    assert all(torch.equal(state[k], v) for k, v in tr2.model.state_dict().items())


def test_model_and_weighting_must_follow_their_protocols(tmp_path):
    train, val = make_loaders()
    with pytest.raises(ModelError, match=r"Linear is not a multi-task model: it lacks \['heads', 'tasks', "):
        Trainer(torch.nn.Linear(2, 2), train, val, mse_criteria(), None, work_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"weighting.*object lacks \['name', 'backward'"):
        _trainer(tmp_path, weighting=object())


def test_resume_refuses_a_checkpoint_of_another_length_and_weights_of_another_shape(tmp_path):
    tr = _trainer(tmp_path, tensorboard=False, checkpoint_iters=2)
    tr.pre_train(3, 1e-2)
    with pytest.raises(CheckpointError, match="checkpoint of 'pre_train', a 3-step run; this is 'pre_train', "
                                              "a 4-step run"):
        _trainer(tmp_path, tensorboard=False).pre_train(4, 1e-2, resume=True)
    conv = "units.conv0.common.weight"
    bad = {k: (v[:1] if k == conv else v) for k, v in tr.model.state_dict().items() if k != "heads.b.bias"}
    torch.save({"model": bad}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt: does not fit the model; missing keys \['heads\.b\.bias'\].*"
                                              r"'units\.conv0\.common\.weight' is \(1, 3, 3, 3\) in the checkpoint "
                                              r"but \(8, 3, 3, 3\)"):
        tr.load_weights(tmp_path / "bad.pt")
    tr.close()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_interrupted_phase_resumes_in_process_to_uninterrupted_weights(tmp_path, device):
    kw = dict(device=device, checkpoint_iters=2, tensorboard=False)
    full = _trainer(tmp_path / "full", **kw)
    full.alter_train_with_reg(5, (1, 1), network_lr=1e-2, policy_lr=0.05)
    calls = {"n": 0}

    def dying(out, y):  # two criterion calls an iteration: dies in iteration 4, after the iteration-2 checkpoint
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return torch.nn.functional.mse_loss(out, y)

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "cut", criteria={t: dying for t in TASKS}, **kw).alter_train_with_reg(
            5, (1, 1), network_lr=1e-2, policy_lr=0.05)
    torch.manual_seed(7)  # the RNG state comes from the checkpoint
    resumed = _trainer(tmp_path / "cut", model=tiny_model(seed=5), **kw)
    resumed.alter_train_with_reg(5, (1, 1), network_lr=1e-2, policy_lr=0.05, resume=True)
    assert "resumed from" in (tmp_path / "cut" / "train.log").read_text()
    assert resumed.tau == pytest.approx(full.tau)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)


def test_weighting_by_name_trains_and_checkpoints_its_state(tmp_path):
    tr = _trainer(tmp_path, weighting="uncertainty", checkpoint_iters=2)
    tr.pre_train(4, 1e-2)
    ck = torch.load(tmp_path / "checkpoints" / "pre_train_latest.pt", weights_only=True)
    assert ck["extras"]["weighting"] is not None
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in tr.weighting.state_dict().values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def test_validate_with_baseline_reports_three_delta_m_variants(tmp_path):
    from automtl.metrics import Baseline

    tr = _trainer(tmp_path)
    base = Baseline({t: {"mse": 1.0} for t in TASKS}, {t: {"mse": False} for t in TASKS}, {t: "mse" for t in TASKS})
    base.save(tmp_path / "base.json")
    res = tr.validate("pre", baseline=tmp_path / "base.json")
    mse = sum(res[t]["mse"] for t in TASKS) / len(TASKS)
    assert res["delta_m"]["delta_m_maninis"] == pytest.approx(-(mse - 1.0) * 100)
    assert set(res["delta_m"]) == {"delta_m_maninis", "delta_m_all_metrics", "delta_m_task_balanced"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_phases_run_on_gpu(tmp_path):
    tr = _trainer(tmp_path, device="cuda", checkpoint_iters=2)
    tr.pre_train(3, 1e-2)
    tr.alter_train_with_reg(4, (1, 1), network_lr=1e-2)
    assert next(tr.model.parameters()).is_cuda
    res = tr.validate("mtl")
    assert all(math.isfinite(res[t]["mse"]) for t in TASKS)
    ck = torch.load(tmp_path / "checkpoints" / "alter_train_with_reg_latest.pt", weights_only=True,
                    map_location="cpu")
    assert "cuda" in ck["rng"]


class _PenalisedHead(torch.nn.Conv2d):
    """A head whose forward reports an auxiliary loss: a large L2 penalty on its own weights."""

    def forward(self, x):
        self._penalty = 10.0 * self.weight.pow(2).sum()
        return super().forward(x)

    def auxiliary_losses(self):
        return {"l2": self._penalty} if hasattr(self, "_penalty") else {}


def test_auxiliary_losses_of_modules_join_their_task_loss(tmp_path):
    from torch import nn
    from train_helpers import tiny_backbone

    from automtl.supernet import MTLModel

    def model():
        torch.manual_seed(0)
        return MTLModel(tiny_backbone(), {"a": _PenalisedHead(16, 1, 1), "b": nn.Conv2d(16, 1, 1)})

    with_aux = _trainer(tmp_path / "aux", model=model())
    with_aux.pre_train(6, 1e-2)
    plain = model()
    plain.heads["a"].auxiliary_losses = lambda: {}  # same network, nothing reported
    without = _trainer(tmp_path / "plain", model=plain)
    without.pre_train(6, 1e-2)
    norm = lambda tr: float(tr.model.heads["a"].weight.detach().norm())
    assert norm(with_aux) < 0.8 * norm(without)
    with_aux.close(), without.close()
    hist = json.loads((tmp_path / "aux" / "history.json").read_text())
    assert len(hist["pre_train/aux_loss/a"]) == 6 and "pre_train/aux_loss/b" not in hist
