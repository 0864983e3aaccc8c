"""MoE layers in the ViT-MVT space: FFN-kind / experts / top-k genes, exact total and active
counts, the M3ViT and Edge-MoE presets, the supernet's shared prefix, export, per-task
pruning and the inference report."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from automtl.errors import ArchError, DataError, UnknownTaskError
from automtl.train.steps import AuxiliaryLosses, auxiliary_loss_modules
from search_spaces.vit_mvt import (
    PRESETS,
    MoESettings,
    SpaceConfig,
    build_space,
    build_supernet,
    export_subnet,
    load_subnet,
    moe_inference_report,
    prune_task_experts,
    save_subnet,
)

TASKS = ("seg", "depth")
OUTPUTS = {"seg": 5, "depth": 1}
MICRO_MOE = SpaceConfig("micro_moe", depths=(2, 3), embeds=(32, 48), heads=(1, 2),
                        mlp_ratios=(1.0, 2.0), img_size=64, ffn_kinds=("dense", "locality", "moe"),
                        num_experts=(2, 4), top_ks=(1, 2), moe_mlp_ratio=1.0)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    return build_space(MICRO_MOE, tasks=TASKS, num_outputs=OUTPUTS)


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _moe_cand(space, *, layer: int = 1, experts: int = 4, k: int = 2) -> dict:
    """The smallest candidate with layer ``layer`` made an MoE layer."""
    c = {key: v for key, v in space.smallest().items()
         if key not in (f"mlp_ratio.{layer}", f"share.{layer}.fc1.seg", f"share.{layer}.fc2.seg",
                        f"share.{layer}.fc1.depth", f"share.{layer}.fc2.depth")}
    c.update({f"ffn.{layer}": "moe", f"num_experts.{layer}": experts, f"top_k.{layer}": k})
    return space.canonical(c)


def test_genes_sample_mutate_crossover_stay_valid(space):
    rng = random.Random(0)
    kinds = set()
    for _ in range(60):
        c = space.sample(rng)
        assert space.canonical(c) == c
        for child in (space.mutate(c, rng, p_layer=0.5, p_global=0.5), space.sample(rng)):
            space.validate(child)
            if space.can_crossover(c, child):
                space.validate(space.crossover(c, child, rng))
        for i in range(c["depth.0"]):
            kinds.add(c[f"ffn.{i}"])
            moe = c[f"ffn.{i}"] == "moe"
            assert (f"mlp_ratio.{i}" in c) != moe and (f"share.{i}.fc1.seg" in c) != moe
            if moe:
                assert c[f"top_k.{i}"] <= c[f"num_experts.{i}"]
    assert kinds == {"dense", "locality", "moe"}
    assert space.mutate(c, rng, p_layer=0.0, p_global=0.0) == c
    lo, hi = space.param_range()
    totals = [space.count_params(space.sample(rng))["total"] for _ in range(200)]
    assert lo <= min(totals) and max(totals) <= hi


@pytest.mark.parametrize("bad, key", [
    ({"top_k.1": 4}, "top_k.1"),                 # not a choice
    ({"num_experts.1": 3}, "num_experts.1"),
    ({"num_experts.1": True}, "num_experts.1"),
    ({"ffn.1": "conv"}, "ffn.1"),
    ({"ffn.7": "moe"}, "ffn.7"),                  # beyond the supernet depth
])
def test_moe_genes_validate(space, bad, key):
    with pytest.raises(ArchError) as err:
        space.validate({**_moe_cand(space), **bad})
    assert err.value.key == key
    missing = {k: v for k, v in _moe_cand(space).items() if k != "num_experts.1"}
    with pytest.raises(ArchError, match="MoE layer") as err:
        space.validate(missing)
    assert err.value.key == "num_experts.1"


def test_top_k_above_experts_is_an_arch_error():
    cfg = SpaceConfig("k", depths=(2,), embeds=(32,), heads=(1,), mlp_ratios=(1.0,), img_size=64,
                      ffn_kinds=("moe",), num_experts=(2, 4), top_ks=(1, 4))
    s = build_space(cfg, tasks=("seg",), num_outputs={"seg": 5})
    cand = {"depth.0": 2, "embed_channels.0": 32, "num_heads.0": 1, "num_heads.1": 1, "ffn.0": "moe",
            "ffn.1": "moe", "num_experts.0": 4, "top_k.0": 4, "num_experts.1": 2, "top_k.1": 1}
    s.validate(cand)
    with pytest.raises(ArchError, match="top-k 4 is more than the 2 experts") as err:
        s.validate({**cand, "top_k.1": 4})
    assert err.value.key == "top_k.1"
    rng = random.Random(0)
    for _ in range(30):      # sampling, mutation and crossover never pair k = 4 with 2 experts
        a, b = s.sample(rng), s.sample(rng)
        s.validate(s.mutate(a, rng, p_layer=1.0))
        s.validate(s.crossover(a, b, rng))


def test_counts_equal_exported_models_and_outputs_match(space):
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    rng = random.Random(1)
    x = torch.randn(2, 3, 64, 64)
    cands = [_moe_cand(space)] + [space.sample(rng) for _ in range(4)]
    for c in cands:
        counts = space.count_params(c)
        net.set_arch(c)
        ref = net.forward_all(x)
        model = export_subnet(net, c)
        assert _n(model) == counts["total"]
        out = model.forward_all(x)
        for t in TASKS:
            torch.testing.assert_close(out[t], ref[t], rtol=1e-4, atol=1e-5)
            assert _n(export_subnet(net, c, task=t)) == counts[t]
    active = space.count_active(cands[0])
    expert = 2 * 32 * 32 + 32 + 32                 # one expert at width 32, hidden 32
    assert active["seg"] == space.count_params(cands[0])["seg"] - (4 - 2) * expert


@pytest.mark.parametrize("router,embed", [("task_conditioned", "onehot"), ("task_conditioned", "dense")])
def test_task_conditioned_counts(router, embed):
    cfg = dataclasses.replace(MICRO_MOE, moe=MoESettings(router=router, task_embed=embed, task_embed_dim=6))
    sp = build_space(cfg, tasks=TASKS, num_outputs=OUTPUTS)
    torch.manual_seed(0)
    net = build_supernet(sp).eval()
    c = _moe_cand(sp)
    counts = sp.count_params(c)
    assert _n(export_subnet(net, c)) == counts["total"]
    assert all(_n(export_subnet(net, c, task=t)) == counts[t] for t in TASKS)


def test_m3vit_small_preset_rebuilds_the_published_parameter_count():
    """ViT-S (d 384, 12 blocks), 16 experts of hidden 384, top-4, MoE in blocks 1, 3, …, 11."""
    space = build_space("m3vit_small", tasks=("seg",), num_outputs={"seg": 40})
    cand = space.smallest()
    assert [cand[f"ffn.{i}"] for i in range(12)] == ["dense", "moe"] * 6
    assert {cand[f"num_experts.{i}"] for i in range(1, 12, 2)} == {16}
    assert {cand[f"top_k.{i}"] for i in range(1, 12, 2)} == {4}
    cfg = space.cfg
    assert (cfg.moe.router, cfg.moe.aux_weight, cfg.moe_hidden(384)) == ("multi_gate", 0.01, 384)
    # the same network with ViT-S's MLP (ratio 4) in every block
    dense_cfg = dataclasses.replace(cfg, ffn_layout=None)
    d, h = 384, 1536
    mlp = d * h + h + h * d + d                    # 1,181,568
    expert = d * d + d + d * d + d                 # 295,680
    assert 6 * (16 * expert - mlp) == 21_295_872   # "+21 M over ViT-S" for the six MoE layers
    for outs in ({"seg": 40}, {"seg": 40, "depth": 1, "normal": 3}):
        moe_space = build_space("m3vit_small", tasks=tuple(outs), num_outputs=outs)
        dense_space = build_space(dense_cfg, tasks=tuple(outs), num_outputs=outs)
        moe_cand = moe_space.smallest()
        dense_cand = {k: v for k, v in moe_cand.items() if not k.startswith(("num_experts", "top_k"))}
        dense_cand.update({f"ffn.{i}": "dense" for i in range(12)})
        dense_cand.update({f"mlp_ratio.{i}": 4.0 for i in range(12)})
        delta = moe_space.count_params(moe_cand)["total"] - dense_space.count_params(dense_cand)["total"]
        gates = 6 * len(outs) * 16 * d             # one gate (no bias) per task and MoE layer
        assert delta == 6 * (16 * expert - mlp) + gates
    torch.manual_seed(0)
    model = export_subnet(build_supernet(space), cand, task="seg")
    assert _n(model) == space.count_params(cand)["total"]
    assert space.count_active(cand)["seg"] == space.count_params(cand)["seg"] - 6 * 12 * expert


def test_edge_moe_tiny_preset():
    space = build_space("edge_moe_tiny", tasks=("seg", "depth"), num_outputs={"seg": 40, "depth": 1})
    cand = space.smallest()
    cfg = space.cfg
    assert (cfg.embeds, cfg.depths, cfg.num_experts, cfg.top_ks, cfg.moe_hidden(192)) == \
        ((192,), (12,), (16,), (2,), 384)
    assert [i for i in range(12) if cand[f"ffn.{i}"] == "moe"] == [1, 3, 5, 7, 9, 11]
    expert = 2 * 192 * 384 + 384 + 192
    counts, active = space.count_params(cand), space.count_active(cand)
    assert counts["seg"] - active["seg"] == 6 * (16 - 2) * expert
    assert PRESETS["edge_moe_tiny"].moe.router == "multi_gate"


def test_forward_all_runs_blocks_before_the_first_moe_layer_once(space):
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    c = _moe_cand(space, layer=1)
    net.set_arch(c)
    assert net.shared_prefix() == 1
    calls = []
    for i, blk in enumerate(net.blocks):
        blk.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    x = torch.randn(1, 3, 64, 64)
    out = net.forward_all(x)
    assert calls == [0, 1, 1]                      # block 0 once, the MoE block per task
    for t in TASKS:
        assert torch.equal(out[t], net(x, t))
    net.set_arch({**c, "share.0.qkv.depth": "specific"})
    assert net.shared_prefix() == 0


def test_supernet_aux_losses_reach_the_trainer_collector(space):
    torch.manual_seed(0)
    net = build_supernet(space).train()
    net.set_arch(_moe_cand(space, layer=1))
    collector = AuxiliaryLosses(auxiliary_loss_modules(net))
    net(torch.randn(2, 3, 64, 64), "seg")
    aux = collector.collect()
    assert list(aux) == ["moe_balance.block1"] and aux["moe_balance.block1"].requires_grad
    net.set_arch(space.smallest())                 # no MoE layer active any more
    net(torch.randn(2, 3, 64, 64), "seg")
    assert collector.collect() == {}
    net.set_arch(_moe_cand(space, layer=1))
    net.forward_all(torch.randn(2, 3, 64, 64))     # both tasks' routing losses add up
    assert set(collector.collect()) == {"moe_balance.block1"}


def _routed_model():
    """An exported model whose task-conditioned router sends "seg" only to experts 0-2
    (the one-hot task column works as a per-task bias)."""
    cfg = dataclasses.replace(MICRO_MOE, moe=MoESettings(router="task_conditioned"))
    sp = build_space(cfg, tasks=TASKS, num_outputs=OUTPUTS)
    torch.manual_seed(0)
    net = build_supernet(sp).eval()
    c = _moe_cand(sp, layer=1, experts=4, k=1)
    net.set_arch(c)
    router = net.blocks[1].moe.router
    with torch.no_grad():
        router.weight.normal_()
        router.weight[3, router.dim + router.columns["seg"]] = -1e4
    return sp, net, export_subnet(net, c)


def test_pruning_keeps_outputs_and_drops_unused_experts():
    sp, net, model = _routed_model()
    calib = torch.randn(3, 3, 64, 64)
    pruned = prune_task_experts(model, "seg", calib)
    assert torch.equal(pruned(calib), model.task_model("seg")(calib))
    moe = pruned.block(1).moe.moe
    assert moe.kept_experts() == [0, 1, 2] and moe.pruned
    expert = 2 * 32 * 32 + 32 + 32
    full = _n(export_subnet(net, task="seg"))
    assert _n(pruned) == full - expert
    pruned_sn = prune_task_experts(net, "seg", [(calib[:2], None), calib[2:]])   # from the supernet
    assert torch.equal(pruned_sn(calib), pruned(calib))
    report = moe_inference_report(model, "seg", calib)
    (layer,) = report.layers
    assert layer.used == (0, 1, 2) and report.images == 3
    assert report.pruned_params == report.params - expert
    totals = report.totals()
    assert totals["expert_bytes_read"] == pytest.approx(layer.touched_per_image * expert * 4)
    assert totals["moe_flops_all_experts"] > totals["moe_flops"] > 0 and totals["model_flops"] > 0
    assert "kept 3/4" in report.format()


def test_pruning_bad_input_is_typed():
    _, net, model = _routed_model()
    with pytest.raises(DataError, match="no expert in MoE block 1"):
        prune_task_experts(model, "seg", torch.empty(0, 3, 64, 64))
    with pytest.raises(DataError, match="no expert"):
        prune_task_experts(model, "seg", [])
    with pytest.raises(DataError, match="image tensors"):
        prune_task_experts(model, "seg", [torch.randn(3, 64, 64)])
    with pytest.raises(UnknownTaskError, match="normal"):
        prune_task_experts(model, "normal", torch.randn(1, 3, 64, 64))
    with pytest.raises(UnknownTaskError, match="normal"):
        prune_task_experts(net, "normal", torch.randn(1, 3, 64, 64))


def test_subnet_yaml_round_trip_with_moe_genes(space, tmp_path):
    c = _moe_cand(space)
    save_subnet(c, tmp_path / "moe.yaml")
    assert load_subnet(tmp_path / "moe.yaml", space) == c
    assert load_subnet(tmp_path / "moe.yaml")["top_k.1"] == 2
    bad = {**c, "top_k.1": 8}
    with pytest.raises(ArchError, match="top_k.1"):
        save_subnet(bad, tmp_path / "bad.yaml")
