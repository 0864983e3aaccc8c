"""The ``delta`` choice of the AutoMTL policy space: policies, compile (the base runs once),
parameter and FLOP counts, state dicts, bad input; and deltas put on a ViT-MVT from outside."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from automtl.backbones import TinyResNet
from automtl.delta import DeltaLayer, DeltaNetworks, fix_support
from automtl.errors import ModelError, PolicyError, UnknownTaskError
from automtl.supernet import MTLModel, Policy
from automtl.supernet._plan import ref_name
from automtl.supernet.flops import flop_report

TASKS = ["seg", "depth", "normal"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _model(deltas: bool = True) -> MTLModel:
    heads = {t: nn.Conv2d(16, n, 1) for t, n in zip(TASKS, (4, 1, 3))}
    model = MTLModel(TinyResNet(widths=(8, 16)), heads, input_shape=(1, 3, 16, 16))
    if deltas:
        model.add_deltas("seg")
    return model


def _trained_deltas(model: MTLModel, policy: Policy, density: float = 0.2, per_layer: bool = False) -> None:
    deltas = model.weight_deltas(policy)
    for d in deltas:
        with torch.no_grad():
            d.delta.normal_(0, 0.05)
        if per_layer:
            fix_support([d], density)
    for t in () if per_layer else ("depth", "normal"):
        fix_support([model.unit(layer).part("delta", t) for layer in policy.layers
                     if policy.choice(layer, t) == "delta"], density)


def _mixed_policy(model: MTLModel) -> Policy:
    """seg shares; depth: delta everywhere; normal: specialize the stem, delta after, share the last."""
    layers = model.policy_layers
    choices = {layer: {"seg": "share", "depth": "delta",
                       "normal": "specialize" if i == 0 else "share" if i == len(layers) - 1 else "delta"}
               for i, layer in enumerate(layers)}
    return Policy(choices, base="seg")


def test_delta_policies_round_trip_and_three_choice_json_is_unchanged(tmp_path):
    model = _model()
    policy = _mixed_policy(model)
    assert policy.counts()["depth"]["delta"] == len(model.policy_layers)
    loaded = Policy.load(policy.save(tmp_path / "p.json"), model=model)
    assert loaded == policy and loaded.base == "seg"
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["base"] == "seg" and data["choices"][-1] == "delta"
    plain = Policy.all(model, "share").to_dict()
    assert "base" not in plain and plain["choices"] == ["share", "specialize", "skip"]
    assert set(Policy.all(model, "share").counts()["seg"]) == {"share", "specialize", "skip"}


def test_bad_base_and_impossible_deltas_are_typed_errors():
    model = _model()
    layer = model.policy_layers[1]
    row = {t: "share" for t in TASKS}
    with pytest.raises(PolicyError, match="base task 'nope' is not among"):
        Policy({layer: row}, base="nope")
    with pytest.raises(PolicyError, match="needs the policy's base"):
        Policy({layer: {**row, "depth": "delta"}})
    with pytest.raises(PolicyError, match="delta of itself"):
        Policy({layer: {**row, "seg": "delta"}}, base="seg")
    with pytest.raises(PolicyError, match="skips it"):
        Policy({layer: {**row, "seg": "skip", "depth": "delta"}}, base="seg")
    with pytest.raises(PolicyError, match="not among the model's tasks"):
        Policy.delta(model, "nope")
    with pytest.raises(UnknownTaskError, match="nope"):
        _model(deltas=False).add_deltas("nope")
    with pytest.raises(ModelError, match="cannot take a delta on itself"):
        _model(deltas=False).add_deltas("seg", tasks=["seg", "depth"])
    with pytest.raises(PolicyError, match="no delta layers"):
        Policy.delta(model, "seg").validate(_model(deltas=False))
    other = _model(deltas=False)
    other.add_deltas("seg", tasks=["depth"])
    with pytest.raises(PolicyError, match="no delta there"):
        _mixed_policy(model).validate(other)


def _base_counter(model: MTLModel, policy: Policy) -> tuple[dict[int, int], list]:
    """Forward-hook call counts of the base task's own modules (its norms, and the shared
    weights that no other task shares)."""
    calls: dict[int, int] = {}
    handles = []
    for layer in policy.layers:
        unit = model.unit(layer)
        mods = [unit.share_norm["seg"]]
        if list(policy[layer].values()).count("share") == 1:
            mods.append(unit.common)
        for m in mods:
            calls[id(m)] = 0
            handles.append(m.register_forward_hook(
                lambda mod, i, o: calls.__setitem__(id(mod), calls[id(mod)] + 1)))
    return calls, handles


def test_delta_policies_compile_and_forward_all_runs_the_base_once():
    model = _model().eval()
    policy = _mixed_policy(model)
    _trained_deltas(model, policy)
    calls, handles = _base_counter(model, policy)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model.forward_all(x, policy)
    assert calls and set(calls.values()) == {1}
    for h in handles:
        h.remove()
    alone = {t: model(x, task=t, stage="fixed", policy=policy) for t in TASKS}
    for t in TASKS:
        assert torch.allclose(alone[t], ref[t], atol=1e-5)
    for sparse in (True, False):
        branched = model.compile(policy, sparse_deltas=sparse).eval()
        assert sum(p.numel() for p in branched.parameters()) == model.count_params(policy)["total"]
        deltas = [m for m in branched.modules() if isinstance(m, DeltaLayer)]
        assert len(deltas) == 2 * len(model.policy_layers) - 2 and all(d.sparse == sparse for d in deltas)
        hits: dict[int, int] = {}
        expected: dict[int, int] = {}

        def count(mod, inputs, output, hits=hits):
            hits[id(mod)] += 1

        for layer in policy.layers:
            for t in ("depth", "normal"):
                name = ref_name(("delta", layer, t))
                if name in branched.layers:
                    base = branched.layers[name].base
                    expected[id(base)] = list(policy[layer].values()).count("share")  # the base + sharers
                    if id(base) not in hits:
                        hits[id(base)] = 0
                        base.register_forward_hook(count)
        with torch.no_grad():
            out = branched(x)
        assert hits == expected and 1 in hits.values()  # each base layer ran once per input it reads
        for t in TASKS:
            assert torch.allclose(out[t], ref[t], atol=1e-4)


def test_count_params_counts_only_non_zero_deltas():
    model = _model()
    policy = Policy.delta(model, "seg")
    before = model.count_params(policy)
    _trained_deltas(model, policy, density=0.25)
    after = model.count_params(policy)
    nnz = sum(d.value.numel() for d in model.weight_deltas(policy) if d.value is not None)
    assert after["total"] - before["total"] == nnz
    weights = sum(model.unit(layer).common.weight.numel() for layer in model.policy_layers)
    assert nnz == pytest.approx(0.25 * 2 * weights, abs=2)
    assert after["seg"] == before["seg"] and after["depth"] > before["depth"]


def test_three_choice_models_keep_their_state_dict_and_load_deltas_from_checkpoints(tmp_path):
    plain = _model(deltas=False)
    fresh = _model(deltas=False)
    assert set(plain.state_dict()) == set(fresh.state_dict())
    assert not any(".delta." in k for k in plain.state_dict())
    model = _model()
    policy = Policy.delta(model, "seg")
    _trained_deltas(model, policy, density=0.1)
    state = model.state_dict()
    assert not any(k.endswith(".delta.delta") or "log_alpha" in k for k in state)  # stored sparse
    other = _model()  # dense L0 deltas: adopts the sparse layout of the saved weights
    other.adopt_state_layout(state)
    other.load_state_dict(state)
    for a, b in zip(model.weight_deltas(policy), other.weight_deltas(policy)):
        assert torch.equal(a.effective(), b.effective())


def test_flop_report_counts_the_skipped_delta_computation():
    model = _model().eval()
    policy = Policy.delta(model, "seg")
    _trained_deltas(model, policy, density=0.1, per_layer=True)
    for d in model.weight_deltas(policy):
        d.set_threshold(1e9)  # every delta activation zeroed: only ΔW·x_base is computed
    x = torch.randn(2, 3, 16, 16)
    report = flop_report(model, x, policy)
    assert report.activation_density == {"depth": 0.0, "normal": 0.0}
    for t in ("depth", "normal"):
        assert report.weight_density[t] == pytest.approx(0.1, abs=1e-3)
        assert report.delta_effective[t] == pytest.approx(0.1 * report.delta_dense[t], rel=0.05)
    assert report.skipped == report.dense_total - report.total > 0
    dense_sub = sum(report.delta_dense.values())
    assert report.total < report.per_task["seg"] + dense_sub
    for d in model.weight_deltas(policy):
        d.set_threshold(0.0)
    full = flop_report(model, x, policy)
    assert full.activation_density["depth"] > 0.5 and full.total > report.total


ROOT = Path(__file__).resolve().parents[2]


class _LinearCounter(TorchFunctionMode):
    """Counts ``F.linear`` calls per weight among ``watched`` (below the delta router)."""

    def __init__(self, watched: set[int]) -> None:
        super().__init__()
        self.watched = watched
        self.calls: dict[int, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.linear and id(args[1]) in self.watched:
            self.calls[id(args[1])] = self.calls.get(id(args[1]), 0) + 1
        return func(*args, **(kwargs or {}))


def test_vit_mvt_blocks_take_deltas_from_outside():
    sys.path.insert(0, str(ROOT))
    from search_spaces.vit_mvt import SpaceConfig, build_space, build_supernet, export_subnet

    cfg = SpaceConfig("micro", depths=(2, 3), embeds=(32, 48), heads=(1, 2), mlp_ratios=(1.0, 2.0), img_size=64)
    space = build_space(cfg, tasks=("cls", "seg"), num_outputs={"cls": 10, "seg": 5})
    multi = export_subnet(build_supernet(space).eval(), space.sample(random.Random(0))).eval()
    model = DeltaNetworks.from_multitask(multi, base="seg").eval()
    assert all(n.rsplit(".", 1)[-1] in ("qkv", "proj", "fc1", "fc2") for n in model.layer_names)
    with pytest.raises(UnknownTaskError):
        DeltaNetworks.from_multitask(multi, base="depth")
    for d in model.weight_deltas():
        with torch.no_grad():
            d.delta.normal_(0, 0.02)
    x = torch.randn(2, 3, 64, 64)
    base_weights = {id(model.nets["seg"].get_submodule(n).weight) for n in model.layer_names}
    counter = _LinearCounter(base_weights)
    with torch.no_grad():
        dense = model(x, task="cls")                   # merged weights, no base pass
        with counter:
            out = model.forward_all(x)                 # base once, deltas on top
    assert len(counter.calls) == len(base_weights) and set(counter.calls.values()) == {1}
    assert torch.allclose(out["seg"], multi.task_model("seg")(x), atol=1e-6)
    assert torch.allclose(out["cls"], dense, atol=1e-5)
    layers = model.delta_layers()
    assert len(layers) == len(model.layer_names) and all(lay.delta.last_activation for lay in layers)
    fix_support(model.weight_deltas(), 0.1)
    for lay in layers:
        lay.delta.set_threshold(0.15)
    with torch.no_grad():
        a = model.forward_all(x)["cls"]
        for lay in layers:
            lay.sparse = True
        b = model.forward_all(x)["cls"]
    assert torch.allclose(a, b, atol=1e-4)
    assert any(0 < lay.delta.last_activation[0] < lay.delta.last_activation[1] for lay in layers)


def test_the_policy_space_offers_delta_as_a_fourth_choice():
    from automtl.spaces import PolicySearchSpace

    model = _model()
    space = PolicySearchSpace(model)
    genes = space.gene_choices()
    layer = model.policy_layers[1]
    assert "delta" in genes[space.gene(layer, "depth")]
    assert "delta" not in genes[space.gene(layer, "seg")] and "skip" not in genes[space.gene(layer, "seg")]
    rng = random.Random(0)
    policies = [space.to_policy(space.sample(rng)) for _ in range(20)]
    assert any(p.counts()["depth"]["delta"] for p in policies)
    for p in policies:
        assert p.base == "seg" and space.count_params(space.from_policy(p)) == model.count_params(p)
    plain = PolicySearchSpace(_model(deltas=False))
    assert all("delta" not in opts for opts in plain.gene_choices().values())
    assert "delta" not in PolicySearchSpace(model, allow_delta=False).gene_choices()[space.gene(layer, "depth")]
