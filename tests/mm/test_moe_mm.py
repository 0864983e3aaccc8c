"""M3ViT MoE layers inside the OpenMMLab backbone wrapper: the balance losses are reachable the
way the multi-task mm model collects them (``<task>.aux_loss.<name>`` in its loss dict)."""
from __future__ import annotations

import torch

from automtl.train.steps import AuxiliaryLosses, auxiliary_loss_modules


def test_supernet_backbone_with_moe_genes_reports_balance_losses():
    from automtl.mm.backbones import ViTMVTSupernetBackbone

    torch.manual_seed(0)
    backbone = ViTMVTSupernetBackbone(size="edge_moe_tiny", task="seg", tasks=("seg",),
                                      num_outputs={"seg": 5}, out_indices=(5, 11))
    genes = backbone.supernet.arch_genes()
    assert [genes[f"ffn.{i}"] for i in range(12)] == ["dense", "moe"] * 6
    assert {genes[f"top_k.{i}"] for i in (1, 3, 5, 7, 9, 11)} == {2}
    collector = AuxiliaryLosses(auxiliary_loss_modules(backbone))   # as MMMultiTaskModel does
    backbone.train()
    maps = backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 192, 4, 4)] * 2
    aux = collector.collect()
    assert set(aux) == {f"moe_balance.block{i}" for i in (1, 3, 5, 7, 9, 11)}
    loss = sum(m.mean() for m in maps) + sum(aux.values())
    loss.backward()
    router = backbone.supernet.blocks[1].moe.router.weight["seg"]
    assert router.grad is not None and router.grad.abs().sum() > 0
    backbone.eval()
    backbone(torch.randn(1, 3, 64, 64))
    assert collector.collect() == {}                                # none at inference


def test_balance_losses_reach_a_single_task_models_loss_dict():
    """tools/train.py attaches them: an mmpretrain classifier over the MoE supernet backbone
    returns ``aux_loss.moe_balance.block<i>`` next to its own loss, and they are trained."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import automtl.mm.register  # noqa: F401
    from automtl.mm.runner import attach_auxiliary_losses

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        model = MODELS.build(dict(
            type="ImageClassifier",
            backbone=dict(type="ViTMVTSupernetBackbone", size="edge_moe_tiny", task="cls", tasks=("cls",),
                          num_outputs={"cls": 3}),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=3, in_channels=192)))
    assert attach_auxiliary_losses(model) == 6
    model.train()
    samples = [DataSample().set_gt_label(i % 3) for i in range(2)]
    losses = model(torch.randn(2, 3, 64, 64), samples, mode="loss")
    assert {f"aux_loss.moe_balance.block{i}" for i in (1, 3, 5, 7, 9, 11)} <= set(losses)
    sum(losses.values()).backward()
    assert model.backbone.supernet.blocks[1].moe.router.weight["cls"].grad.abs().sum() > 0
