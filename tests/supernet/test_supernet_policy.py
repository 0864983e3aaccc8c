"""Policy: construction, JSON round trip, validation against a model, sampling."""
from __future__ import annotations

import json

import pytest
import torch
from supernet_helpers import GraphBuilder, heads, tiny_resnet

from automtl.errors import PolicyError
from automtl.supernet import CHOICES, MTLModel, Policy


@pytest.fixture(scope="module")
def model() -> MTLModel:
    torch.manual_seed(0)
    return MTLModel(tiny_resnet(), heads(16))


def test_all_and_counts(model: MTLModel) -> None:
    p = Policy.all(model, "specialize")
    assert p.layers == tuple(model.policy_layers) and p.tasks == tuple(model.tasks)
    assert p.counts()["seg"] == {"share": 0, "specialize": len(model.policy_layers), "skip": 0}
    with pytest.raises(PolicyError):
        Policy.all(model, "skip")


def test_json_round_trip_is_readable(model: MTLModel, tmp_path) -> None:
    p = model.sample_policy(seed=3)
    path = p.save(tmp_path / "sub" / "policy.json")
    data = json.loads(path.read_text())
    assert data["policy"]["stem.conv"]["depth"] in CHOICES
    assert set(data["logits"]["b2.c1.conv"]) == set(model.tasks)
    q = Policy.load(path, model=model)
    assert q == p and q.logits == p.logits
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="bad.json:1"):
        Policy.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something"}))
    with pytest.raises(PolicyError, match="not an automtl policy"):
        Policy.load(other)
    with pytest.raises(PolicyError, match="no such"):
        Policy.load(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "automtl-policy", "version": 1,
                                 "policy": {"l": {"a": "share", "b": "borrow"}}}))
    with pytest.raises(PolicyError, match=r"layer 'l', task 'b'.*borrow"):
        Policy.load(wrong)


def test_policy_for_another_model_names_the_difference(model: MTLModel, tmp_path) -> None:
    other_tasks = MTLModel(tiny_resnet(), heads(16, ("seg", "edges")))
    path = Policy.all(other_tasks).save(tmp_path / "p.json")
    with pytest.raises(PolicyError) as err:
        Policy.load(path, model=model)
    assert "'depth'" in str(err.value) and "'edges'" in str(err.value) and "p.json" in str(err.value)

    b = GraphBuilder((1, 3, 16, 16), name="other")
    small = MTLModel(b.finish(b.cbr("first", "data", 3, 16)), heads(16))
    with pytest.raises(PolicyError) as err:
        Policy.all(small).validate(model)
    assert "'b1.c1.conv'" in str(err.value)  # missing from the policy
    assert "'first.conv'" in str(err.value)  # layer the model does not have
    with pytest.raises(PolicyError):
        model.set_policy(Policy.all(small))


def test_skip_where_impossible_is_rejected() -> None:
    b = GraphBuilder((1, 3, 10, 10), name="valid")
    g = b.finish(b.cbr("v", "data", 3, 4, k=3, relu=False)
                 and b.bn("v2.bn", b.conv("v2.conv", "v.bn", 4, 4, k=3, p=0), 4))
    m = MTLModel(g, heads(4, ("a",)))
    assert m.skip_allowed("v.conv") and not m.skip_allowed("v2.conv")
    with pytest.raises(PolicyError, match=r"'skip' is not possible.*v2.conv/a"):
        Policy.all(m).replace({("v2.conv", "a"): "skip"}).validate(m)
    for seed in range(5):
        assert Policy.random(m, seed=seed).choice("v2.conv", "a") != "skip"
    with torch.no_grad():
        m.logits[:, :, 2] = 100.0
    assert m.argmax_policy().choice("v2.conv", "a") != "skip"
    assert m.sample_policy(seed=0).choice("v2.conv", "a") != "skip"
    assert m.argmax_policy().choice("v.conv", "a") == "skip"


def test_sampling_is_seeded_and_follows_logits(model: MTLModel) -> None:
    m = MTLModel(tiny_resnet(), heads(16))
    assert m.sample_policy(seed=1) == m.sample_policy(seed=1)
    assert m.argmax_policy() == Policy.all(m, "share")  # ties go to share
    assert len({m.sample_policy(seed=s).key() for s in range(5)}) > 1
    with torch.no_grad():
        m.logits[:, :, 1] = 20.0
    assert m.sample_policy(seed=5) == Policy.all(m, "specialize")
    assert m.policy_logits().logits["stem.conv"]["seg"] == pytest.approx([0.0, 20.0, 0.0])


def test_replace_and_lookup(model: MTLModel) -> None:
    p = Policy.all(model).replace({("b2.c1.conv", "depth"): "skip"})
    assert p["b2.c1.conv"] == {"seg": "share", "depth": "skip", "normal": "share"}
    assert p.task_choices("depth")["b2.c1.conv"] == "skip"
    with pytest.raises(PolicyError, match="no task 'x'"):
        p.replace({("b2.c1.conv", "x"): "skip"})
    with pytest.raises(PolicyError, match="no layer 'nope'"):
        p["nope"]
