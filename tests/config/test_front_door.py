"""The config front door: one loader, --cfg-options, and one schema per section that names the
dotted key, the value and what is expected."""
import pytest

from automtl.cli.run_automtl import check_config
from automtl.config import config_kind, load_config, parse_cfg_options
from automtl.errors import ConfigError

BASE = dict(tasks=["segment_semantic", "depth_zbuffer"],
            model=dict(backbone=dict(type="TinyResNet", widths=(8,))),
            pre_train=dict(iters=4, lr=1e-3),
            alter_train_with_reg=dict(iters=4, policy_network_iters=(1, 1)),
            post_train=dict(iters=4))


def _with(**sections):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **value}
        else:
            cfg[name] = value
    return cfg


def test_a_valid_config_fills_the_defaults():
    plan = check_config(BASE)
    assert plan.pre_train.iters == 4 and plan.pre_train.weight_decay == 1e-4  # AutoMTL's pre-train Adam
    assert plan.alter_train_with_reg.policy_network_iters == (1, 1)
    assert plan.trainer.weighting == "fixed" and plan.sample.n == 20


@pytest.mark.parametrize("sections, key", [
    (dict(trainer=dict(checkpoint_iter=5)), "trainer.checkpoint_iter"),
    (dict(pre_train=dict(iter=5)), "pre_train.iter"),
    (dict(pre_train=dict(iters="four")), "pre_train.iters"),
    (dict(pre_train=dict(iters=2.5)), "pre_train.iters"),
    (dict(pre_train=dict(iters=-5)), "pre_train.iters"),
    (dict(pre_train=dict(lr="fast")), "pre_train.lr"),
    (dict(pre_train=dict(lr=-1.0)), "pre_train.lr"),
    (dict(pre_train=[4]), "pre_train"),
    (dict(alter_train_with_reg=dict(policy_network_iters=3)), "alter_train_with_reg.policy_network_iters"),
    (dict(trainer=dict(checkpoint_iters=-2)), "trainer.checkpoint_iters"),
    (dict(sample=dict(n=0)), "sample.n"),
    (dict(tasks=["normal", "normal"]), "tasks"),
    (dict(tasks="normal"), "tasks"),
    (dict(seed="zero"), "seed"),
    (dict(post_trian=dict(iters=3)), "post_trian"),
])
def test_bad_values_name_their_dotted_key(sections, key):
    with pytest.raises(ConfigError) as info:
        check_config(_with(**sections))
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


def test_unknown_key_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"accepted: \[.*'checkpoint_iters'"):
        check_config(_with(trainer=dict(checkpoint_iter=5)))


def test_wrong_value_is_shown():
    with pytest.raises(ConfigError, match=r"got 'four'"):
        check_config(_with(pre_train=dict(iters="four")))


def test_cfg_options_parse_literals_and_strings():
    opts = parse_cfg_options(["a.b=1", "c=[1, 2]", "d=/data/nyu", "e=true", "f=None", "g=(3, 4)"])
    assert opts == {"a.b": 1, "c": [1, 2], "d": "/data/nyu", "e": True, "f": None, "g": (3, 4)}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_cfg_options(["novalue"])


def test_load_config_applies_options_and_base(tmp_path):
    (tmp_path / "base.py").write_text("tasks = ['normal']\npre_train = dict(iters=10, lr=0.1)\n")
    (tmp_path / "child.py").write_text("_base_ = ['base.py']\npre_train = dict(iters=20)\n")
    cfg = load_config(tmp_path / "child.py", ["pre_train.lr=0.5"])
    assert cfg.pre_train.iters == 20 and cfg.pre_train.lr == 0.5 and cfg.tasks == ["normal"]


def test_load_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("tasks = [\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_config(bad)


def test_config_kind():
    assert config_kind({"search": {}}) == "search"
    assert config_kind({"supernet_train": {}}) == "supernet"
    assert config_kind({"tasks": []}) == "automtl"
    assert config_kind({"train_dataloader": {}, "model": {}}) == "mm"
