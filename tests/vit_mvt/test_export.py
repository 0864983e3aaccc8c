"""Exported plain models: identical outputs, shared modules shared, exact parameter counts."""
from __future__ import annotations

import random

import pytest
import torch

from automtl.errors import CheckpointError, UnknownTaskError
from search_spaces.vit_mvt import MultiTaskViTMVT, ViTMVTNet, build_space, build_supernet, export_subnet


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_export_matches_supernet_and_count(micro, micro_net):
    rng = random.Random(0)
    x = torch.randn(2, 3, 64, 64)
    for _ in range(12):
        cand = micro.sample(rng)
        micro_net.set_arch(cand)
        ref = micro_net.forward_all(x)
        model = export_subnet(micro_net, cand).eval()
        assert isinstance(model, MultiTaskViTMVT)
        counts = micro.count_params(cand)
        assert _n(model) == counts["total"]
        got = model.forward_all(x)
        for t in micro.tasks:
            torch.testing.assert_close(got[t], ref[t], rtol=0, atol=1e-6)
            plain = model.task_model(t)
            assert _n(plain) == counts[t]
            torch.testing.assert_close(plain(x), ref[t], rtol=0, atol=1e-6)
        maps = model.task_model("seg").forward_features(x, out_indices=(0, -1))
        ref_maps = micro_net.forward_features(x, "seg", out_indices=(0, -1))
        for a, b in zip(maps, ref_maps):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_export_single_task_is_plain_and_independent(micro, micro_net):
    cand = micro.sample(random.Random(1))
    net = export_subnet(micro_net, cand, task="seg").eval()
    assert isinstance(net, ViTMVTNet)
    assert _n(net) == micro.count_params(cand)["seg"]
    assert not any(type(m).__name__.startswith(("Adaptive", "Elastic")) for m in net.modules())
    x = torch.randn(1, 3, 64, 64)
    micro_net.set_arch(cand)
    torch.testing.assert_close(net(x), micro_net(x, "seg"), rtol=0, atol=1e-6)
    with pytest.raises(UnknownTaskError):
        export_subnet(micro_net, cand, task="det")


def test_shared_modules_are_one_object(micro, micro_net):
    cand = micro.canonical({**micro.smallest(), "share.1.fc2.seg": "specific"})
    model = export_subnet(micro_net, cand)
    cls, seg = model.task_model("cls"), model.task_model("seg")
    assert cls.blocks[0].qkv is seg.blocks[0].qkv
    assert cls.blocks[1].fc1 is seg.blocks[1].fc1
    assert cls.blocks[1].fc2 is not seg.blocks[1].fc2
    assert cls.stem is seg.stem and cls.blocks[1].rel is seg.blocks[1].rel
    assert cls.head is not seg.head


def test_export_leaves_the_active_arch(micro, micro_net):
    a, b = micro.smallest(), micro.sample(random.Random(2))
    micro_net.set_arch(a)
    export_subnet(micro_net, b)
    assert micro_net.arch_genes() == micro.canonical(a)


def test_export_learned_sharing_follows_scores(micro, micro_net):
    arch = {k: v for k, v in micro.smallest().items() if not k.startswith("share.")}
    micro_net.set_arch(arch)
    with torch.no_grad():
        micro_net.blocks[0].fc1.score["seg"].fill_(0.1)
        micro_net.blocks[0].fc1.task_weight["seg"].normal_()
    model = export_subnet(micro_net).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x, "seg"), micro_net(x, "seg"), rtol=0, atol=1e-6)
    assert model.task_model("cls").blocks[0].fc1 is not model.task_model("seg").blocks[0].fc1
    genes = micro_net.arch_genes()
    assert _n(model) == micro.count_params(genes)["total"]


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_count_equals_exported_params_property(name):
    """≥ 200 random subnets over the three spaces (built on the meta device: no memory)."""
    space = build_space(name, tasks=("cls", "seg", "depth"))
    with torch.device("meta"):
        net = build_supernet(space)
    rng = random.Random(hash(name) % 1000)
    for _ in range(70):
        cand = space.sample(rng)
        with torch.device("meta"):
            model = export_subnet(net, cand)
        counts = space.count_params(cand)
        assert _n(model) == counts["total"], cand
        for t in space.tasks:
            assert _n(model.task_model(t)) == counts[t], (t, cand)


def test_state_dict_of_another_size_names_tensors(micro, micro_net):
    model = export_subnet(micro_net, micro.smallest())
    other = export_subnet(micro_net, micro.canonical({**micro.smallest(), "embed_channels.0": 48}))
    with pytest.raises(CheckpointError, match=r"patch\.weight.*\(48, 64, 8, 8\)"):
        model.load_state_dict(other.state_dict())
    model.load_state_dict(export_subnet(micro_net, micro.smallest()).state_dict())
    with pytest.raises(CheckpointError, match="missing"):
        model.task_model("cls").load_state_dict({})
    bigger = build_space(type(micro.cfg)("m2", (2, 3), (32, 64), (1, 2), (1.0, 2.0), 64),
                         tasks=micro.tasks, num_outputs=micro.num_outputs)
    with pytest.raises(CheckpointError, match="pos"):
        micro_net.load_state_dict(build_supernet(bigger).state_dict())


@pytest.mark.parametrize("tasks", [("cls", "seg"), ("cls", "seg", "depth", "normal", "edge")])
def test_count_equals_exported_params_many_tasks(micro, tasks):
    """Both counting paths: one table look-up per layer (≤ 4 tasks) and per linear (more)."""
    space = micro.with_tasks(tasks) if set(tasks) <= set(micro.tasks) else build_space(
        micro.cfg, tasks=tasks)
    with torch.device("meta"):
        net = build_supernet(space)
    rng = random.Random(len(tasks))
    for _ in range(15):
        cand = space.sample(rng)
        with torch.device("meta"):
            model = export_subnet(net, cand)
        counts = space.count_params(cand)
        assert _n(model) == counts["total"]
        assert all(_n(model.task_model(t)) == counts[t] for t in tasks)


def test_exported_subnet_runs_in_onnxruntime_as_in_pytorch(micro, micro_net, tmp_path):
    """An exported ViT-MVT subnet (single-task and multi-task ``forward_all``) as ONNX: onnxruntime
    reproduces PyTorch within 1e-4 (float32 kernels sum in another order)."""
    from automtl.graph.onnx import export_onnx

    cand = micro.sample(random.Random(2))
    x = torch.randn(2, 3, 64, 64)
    single = export_subnet(micro_net, cand, task="seg").eval()
    report = export_onnx(single, x, tmp_path / "seg.onnx")
    assert report.max_abs_diff["output"] <= 1e-4

    class AllTasks(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_all(x)

    multi = export_subnet(micro_net, cand).eval()
    report = export_onnx(AllTasks(multi), x, tmp_path / "all.onnx")
    assert report.outputs == micro.tasks and max(report.max_abs_diff.values()) <= 1e-4
