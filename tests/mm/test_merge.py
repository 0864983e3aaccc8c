"""tools/merge_checkpoints.py: per-task ViT-MVT checkpoints → one multi-task checkpoint by the
sharing scores (automtl.mm.merge), loaded into the compact multi-task backbone."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from automtl.errors import CheckpointError
from automtl.io import atomic_save

ROOT = Path(__file__).resolve().parents[2]
T_SUBNET = ROOT / "configs" / "nas" / "vit_mvt_tiny" / "subnet.yaml"
TASKS = ("cls", "det", "seg")


@pytest.fixture(scope="module")
def supernet():
    """The tiny supernet at the T subnet for three tasks, with task weights apart from the shared
    ones and random sharing scores (about a third of the choices task-specific)."""
    from search_spaces.vit_mvt import build_space, build_supernet, load_subnet

    torch.manual_seed(0)
    space = build_space("tiny", TASKS, num_outputs={t: 1 for t in TASKS})
    net = build_supernet(space).eval()
    net.set_arch(load_subnet(T_SUBNET))
    rng = random.Random(0)
    with torch.no_grad():
        for i in range(net.arch.depth):
            for lin in net.block(i).linears().values():
                for t in TASKS:
                    lin.task_weight[t].add_(0.01 * torch.randn_like(lin.task_weight[t]))
                    lin.score[t].fill_(0.9 if rng.random() < 0.67 else 0.1)
    return net


AGGREGATION = (2, 5, 9, 13)  # det's conv aggregation blocks (configs/nas/vit_mvt_tiny/task_det.py)


@pytest.fixture(scope="module")
def task_nets(supernet):
    """Each task's single-task backbone (``ViTMVTSubnetBackbone``, what the single-task configs
    train) holding the task's network exported from the supernet; det with its conv
    aggregation blocks (non-trivial weights)."""
    from automtl.mm.backbones import ViTMVTSubnetBackbone
    from search_spaces.vit_mvt import export_subnet

    nets = {}
    for t in TASKS:
        bb = ViTMVTSubnetBackbone(T_SUBNET, conv_aggregation=AGGREGATION if t == "det" else False)
        plain = {k: v for k, v in export_subnet(supernet, task=t).state_dict().items() if not k.startswith("head.")}
        missing, unexpected = bb.load_state_dict(plain, strict=False)
        assert not unexpected and all(k.startswith("aggregation.") for k in missing)
        with torch.no_grad():
            for agg in bb.aggregation.values():
                agg.bn2.weight.normal_()
        nets[t] = bb.eval()
    return nets


def _task_checkpoints(task_nets, tmp_path: Path) -> dict[str, Path]:
    """Per task, an mm-style single-task checkpoint: its backbone plus a head tensor of its own."""
    out = {}
    for t in TASKS:
        state = {f"backbone.{k}": v for k, v in task_nets[t].state_dict().items()}
        state[f"head.{t}_fc.weight"] = torch.full((3, 4), float(len(t)))
        out[t] = atomic_save({"meta": {}, "state_dict": state}, tmp_path / f"{t}.pth")
    return out


def test_merge_round_trip_equals_task_networks(supernet, task_nets, tmp_path: Path) -> None:
    from automtl.mm.compact_backbone import ViTMVTMultiTaskBackbone
    from automtl.mm.merge import merge_checkpoints
    from automtl.mm.safe_load import read_weights

    ckpts = _task_checkpoints(task_nets, tmp_path)
    scores = atomic_save({"state_dict": {f"backbone.supernet.{k}": v for k, v in supernet.state_dict().items()
                                         if ".score." in k}}, tmp_path / "scores.pth")
    report = merge_checkpoints(ckpts, tmp_path / "merged.pth", sharing=scores)
    assert report.space == "tiny" and report.tasks == list(TASKS)
    assert report.params_after < report.params_before and report.bytes_after < report.bytes_before
    # one backbone, plus each task-specific linear once more, minus shared versions no task uses
    agg = sum(p.numel() for p in task_nets["det"].aggregation.parameters()) + sum(
        b.numel() for n, b in task_nets["det"].aggregation.named_buffers() if "num_batches" not in n)
    single = (report.backbone_params_before - agg) // 3 + agg
    extra = 0
    for i in range(supernet.arch.depth):
        for lin in supernet.block(i).linears().values():
            n_specific = sum(not lin.decision(t) for t in TASKS)
            extra += (lin.out_n * lin.in_n + lin.out_n) * (n_specific - (n_specific == len(TASKS)))
    assert report.backbone_params_after == single + extra < report.backbone_params_before
    assert max(report.max_relative_change.values()) == 0.0  # shared weights were equal: exact
    assert "bytes" in report.text()

    state = read_weights(report.out)
    assert state["task_models.det.head.det_fc.weight"].eq(3.0).all()
    assert report.aggregation == {"det": list(AGGREGATION)}
    backbone = ViTMVTMultiTaskBackbone(report.subnet_yaml, tasks=TASKS, final_norm=False, out_indices=(-1,),
                                       aggregation=dict(det=AGGREGATION))
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    backbone.eval()
    decided = supernet.sharing_report()
    assert backbone.sharing_genes() == decided
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        merged = backbone.forward_all(x)
        for t in TASKS:
            own = task_nets[t](x)
            assert torch.equal(merged[t][0], own[0]), t


def test_merge_averages_what_differs_and_keeps_specific() -> None:
    from automtl.mm.merge import combine, merge_backbones

    a, b = torch.randn(4, 4), torch.randn(4, 4)
    assert torch.equal(combine([a, a.clone()]), a)
    assert torch.allclose(combine([a, b]), (a + b) / 2)
    assert combine([torch.tensor(3), torch.tensor(5)]).item() == 5
    states = {"cls": {"blocks.0.qkv.weight": a, "norm.weight": a},
              "det": {"blocks.0.qkv.weight": b, "norm.weight": b}}
    decisions = {(0, "qkv", "cls"): True, (0, "qkv", "det"): False}
    merged = merge_backbones(states, decisions)
    assert torch.equal(merged["blocks.0.qkv.shared.weight"], a)  # the only sharer's weight
    assert torch.equal(merged["blocks.0.qkv.det.weight"], b)
    assert torch.allclose(merged["norm.weight"], (a + b) / 2)
    assert "blocks.0.qkv.cls.weight" not in merged


def test_merge_refuses_checkpoints_of_different_sizes(supernet, task_nets, tmp_path: Path) -> None:
    from automtl.mm.merge import merge_checkpoints
    from search_spaces.vit_mvt import export_subnet

    ckpts = _task_checkpoints(task_nets, tmp_path)
    small = supernet.space.smallest()
    other = export_subnet(supernet, {k: v for k, v in small.items() if not k.startswith("share.")}, task="seg")
    atomic_save({"state_dict": {f"backbone.{k}": v for k, v in other.state_dict().items()}}, ckpts["seg"])
    with pytest.raises(CheckpointError, match=r"not of one size.*shapes differ: 'patch.weight' is \(216, "):
        merge_checkpoints(ckpts, tmp_path / "merged.pth", sharing=T_SUBNET)
    assert not (tmp_path / "merged.pth").exists()


def test_merge_command_line_with_sharing_genes(supernet, task_nets, tmp_path: Path, capsys) -> None:
    """tools/merge_checkpoints.py with the decisions as sharing genes in a subnet YAML; it writes
    the checkpoint and the subnet YAML (architecture + sharing) the deployed config builds from."""
    from automtl.mm.merge import main
    from search_spaces.vit_mvt import load_subnet, save_subnet

    genes = {**load_subnet(T_SUBNET), **supernet.sharing_report()}
    save_subnet(genes, tmp_path / "sharing.yaml")
    ckpts = _task_checkpoints(task_nets, tmp_path)
    out = tmp_path / "deploy" / "merged.pth"
    args = [f"{t}={p}" for t, p in ckpts.items()] + ["-o", str(out), "--sharing", str(tmp_path / "sharing.yaml")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "parameters:" in text and "backbone.aggregation={'det': [2, 5, 9, 13]}" in text
    assert out.is_file() and load_subnet(out.with_name("merged.subnet.yaml")) == genes
    assert main([str(ckpts["cls"]), "-o", str(out)]) == 2
    assert "TASK=CHECKPOINT" in capsys.readouterr().err
    ckpts["seg"].write_bytes(b"not a checkpoint")
    assert main(args) == 2
    assert "seg.pth" in capsys.readouterr().err
