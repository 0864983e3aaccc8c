"""The optimisers each AutoMTL phase builds: AutoMTL's by default, a config's when it names one,
and the regulariser settings reaching the model."""
from __future__ import annotations

import pytest
import torch
from train_helpers import make_loaders, mse_criteria, tiny_model

import automtl.train.trainer as trainer_module
from automtl.errors import ConfigError
from automtl.supernet import Policy
from automtl.train import Trainer
from automtl.train.optim import build_optimizer, step_lr
from automtl.train.settings import PolicyTrainSettings, PostTrainSettings, PreTrainSettings


@pytest.fixture()
def built(monkeypatch):
    """Every optimiser and StepLR a phase builds: ``(key, optimiser)`` and ``(freq, rate)``."""
    seen: dict[str, list] = {"opt": [], "sched": []}

    def record_opt(params, spec, **kw):
        opt = build_optimizer(params, spec, **kw)
        seen["opt"].append((kw["key"], opt))
        return opt

    def record_sched(opt, freq, rate, iters):
        seen["sched"].append((freq, rate))
        return step_lr(opt, freq, rate, iters)

    monkeypatch.setattr(trainer_module, "build_optimizer", record_opt)
    monkeypatch.setattr(trainer_module, "step_lr", record_sched)
    return seen


def _trainer(tmp_path, model=None):
    train, val = make_loaders()
    return Trainer(model or tiny_model(), train, val, mse_criteria(), None, work_dir=tmp_path, progress=False,
                   tensorboard=False)


def _hyper(opt):
    g = opt.param_groups[0]
    return type(opt).__name__, {k: g[k] for k in ("lr", "weight_decay", "betas", "momentum") if k in g}


def test_each_phase_builds_automtls_optimiser_by_default(tmp_path, built):
    tr = _trainer(tmp_path)
    tr.pre_train(1, 1e-3)
    tr.alter_train_with_reg(2, (1, 1), policy_lr=0.01, network_lr=1e-3)
    tr.post_train(1, 1e-3, reload=Policy.all(tr.model))
    got = {key: _hyper(opt) for key, opt in built["opt"]}
    assert got == {
        "pre_train.optimizer": ("Adam", {"lr": 1e-3, "weight_decay": 1e-4, "betas": (0.5, 0.999)}),
        "alter_train_with_reg.optimizer": ("SGD", {"lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9}),
        "alter_train_with_reg.policy_optimizer": ("Adam", {"lr": 0.01, "weight_decay": 5e-4,
                                                           "betas": (0.9, 0.999)}),
        "post_train.optimizer": ("Adam", {"lr": 1e-3, "weight_decay": 1e-4, "betas": (0.5, 0.999)}),
    }
    assert built["sched"][-1] == (4000, 0.5)  # post-train: AutoMTL's StepLR, halved every 4000 iterations
    # the settings of a config have the same defaults as the Trainer
    assert (PreTrainSettings(iters=1).weight_decay, PostTrainSettings(iters=1).decay_lr_freq) == (1e-4, 4000)
    pol = PolicyTrainSettings(iters=1)
    assert (pol.weight_decay, pol.policy_weight_decay, pol.optimizer, pol.reg_sharpness) == (1e-4, 5e-4, None, None)


def test_a_config_overrides_each_optimiser_and_the_regulariser(tmp_path, built, monkeypatch):
    model = tiny_model()
    calls = []
    original = model.policy_regularizer
    monkeypatch.setattr(model, "policy_regularizer", lambda **kw: calls.append(kw) or original(**kw))
    tr = _trainer(tmp_path, model)
    old = dict(optimizer=dict(type="Adam"), weight_decay=0.0)  # the optimiser of earlier versions
    tr.pre_train(**PreTrainSettings(iters=1, **old).kwargs())
    pol = PolicyTrainSettings(iters=2, policy_network_iters=[1, 1], network_lr=1e-3, **old,
                              policy_optimizer=dict(type="SGD", momentum=0.5), policy_weight_decay=0.0,
                              reg_sharpness=1.0, reg_weights=[1.0, 0.5])
    tr.alter_train_with_reg(**pol.kwargs())
    tr.post_train(**PostTrainSettings(iters=1, decay_lr_freq=None,
                                      optimizer=dict(type="AdamW", betas=[0.8, 0.99])).kwargs(),
                  reload=Policy.all(tr.model))
    got = {key: _hyper(opt) for key, opt in built["opt"]}
    assert got["pre_train.optimizer"] == ("Adam", {"lr": 1e-3, "weight_decay": 0.0, "betas": (0.9, 0.999)})
    assert got["alter_train_with_reg.optimizer"] == ("Adam", {"lr": 1e-3, "weight_decay": 0.0,
                                                              "betas": (0.9, 0.999)})
    assert got["alter_train_with_reg.policy_optimizer"] == ("SGD", {"lr": 0.01, "weight_decay": 0.0,
                                                                    "momentum": 0.5})
    assert got["post_train.optimizer"] == ("AdamW", {"lr": 1e-3, "weight_decay": 1e-4, "betas": (0.8, 0.99)})
    assert built["sched"][-1] == (None, 0.5)
    assert calls == [{"sharpness": 1.0, "weights": (1.0, 0.5)}]  # one policy step


@pytest.mark.parametrize("spec, key", [
    (dict(type="RMSprop"), "optimizer.type"),
    (dict(momentum=0.9), "optimizer.type"),
    (dict(type="SGD", lr=0.1), "optimizer.lr"),
    (dict(type="Adam", weight_decay=0.1), "optimizer.weight_decay"),
    (dict(type="SGD", nesterov=True), "optimizer"),  # torch: Nesterov needs a momentum
    ("Adam", "optimizer"),
])
def test_a_bad_optimiser_spec_names_the_key(spec, key):
    with pytest.raises(ConfigError) as err:
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], spec, lr=0.1)
    assert err.value.key == key
