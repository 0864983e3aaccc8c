"""automtl's OpenMMLab backbones and neck: what they compute, the weights they load, what they refuse,
and that every shipped ViT-MVT / AutoMTL OpenMMLab config builds and runs one forward on CPU."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from automtl.errors import ArchError, CheckpointError, ConfigError, ModelError

REPO = Path(__file__).resolve().parents[2]
SUBNET = {size: REPO / f"configs/nas/vit_mvt_{size}/subnet.yaml" for size in ("tiny", "small", "base")}


def test_simple_pyramid_levels_and_bad_input() -> None:
    from automtl.mm.necks import SimplePyramid

    neck = SimplePyramid(in_channels=24, out_channels=16)
    maps = neck((torch.randn(2, 24, 5, 5), torch.randn(2, 24, 6, 8)))  # only the last map is used
    assert neck.num_outs == 5
    assert [tuple(m.shape) for m in maps] == [(2, 16, 24, 32), (2, 16, 12, 16), (2, 16, 6, 8), (2, 16, 3, 4),
                                               (2, 16, 2, 2)]
    assert len(SimplePyramid(24, 8, scales=(1.0, 0.5), extra_pool=False)((torch.randn(1, 24, 4, 4),))) == 2
    with pytest.raises(ConfigError, match="scales"):
        SimplePyramid(24, scales=(3.0,))
    with pytest.raises(ConfigError, match="scales"):
        SimplePyramid(24, scales=(0.5, 1.0))
    with pytest.raises(ModelError, match=r"\(B, 24, H, W\)"):
        neck((torch.randn(1, 32, 4, 4),))


@pytest.fixture(scope="module")
def tiny_export() -> nn.Module:
    """The released ViT-MVT-T subnet exported from a (random) supernet, as users export it."""
    from search_spaces.vit_mvt import build_space, build_supernet, export_subnet, load_subnet

    torch.manual_seed(0)
    space = build_space("tiny", tasks=("cls",))
    net = build_supernet(space)
    return export_subnet(net, load_subnet(SUBNET["tiny"], space), task="cls").eval()


def _save_state(path: Path, state: dict[str, torch.Tensor], prefix: str = "") -> str:
    torch.save({"meta": {"epoch": 1}, "state_dict": {prefix + k: v for k, v in state.items()}}, path)
    return str(path)


def test_subnet_backbone_matches_the_exported_subnet(tmp_path: Path, tiny_export: nn.Module) -> None:
    from automtl.mm.backbones import ViTMVTSubnetBackbone

    ckpt = _save_state(tmp_path / "t.pth", tiny_export.state_dict())
    plain = ViTMVTSubnetBackbone(SUBNET["tiny"], size="tiny", out_indices=(5, -1), final_norm=True,
                                 init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    plain.init_weights()
    with_agg = ViTMVTSubnetBackbone(SUBNET["tiny"], size="tiny", out_indices=(5, -1), final_norm=True,
                                    conv_aggregation=True, init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    with_agg.init_weights()  # aggregation blocks are not in the checkpoint: they start as the identity
    assert sorted(with_agg.aggregation) == ["13", "2", "5", "9"]
    x = torch.randn(2, 3, 64, 64)
    plain.eval()
    with_agg.eval()
    with torch.no_grad():
        mid, last = plain(x)
        mid2, last2 = with_agg(x)
        direct = tiny_export.forward_features(x, out_indices=(5,))[0]
        t, hw = tiny_export.embed(x)
        for blk in tiny_export.blocks:
            t = blk(t, hw)
        logits = tiny_export.forward_head(t, hw, (64, 64))
    assert plain.out_channels == (216, 216) and tuple(last.shape) == (2, 216, 4, 4)
    assert torch.equal(mid, direct)
    torch.testing.assert_close(mid2, mid)
    torch.testing.assert_close(last2, last)
    # final norm + token mean + the exported head's linear = the exported network's logits
    head = tiny_export.head
    torch.testing.assert_close(last.mean((2, 3)) @ head.weight.t() + head.bias, logits)


def test_subnet_outside_the_space_is_refused() -> None:
    from automtl.mm.backbones import ViTMVTSubnetBackbone

    with pytest.raises(ArchError, match=r"embed_channels\.0.*\[192, 216, 240\].*small/subnet\.yaml.*tiny"):
        ViTMVTSubnetBackbone(SUBNET["small"], size="tiny")
    with pytest.raises(ArchError, match=r"num_heads\.3.*\[3, 4\]"):
        ViTMVTSubnetBackbone({**_tiny_genes(), "num_heads.3": 5}, size="tiny")
    with pytest.raises(ConfigError, match="size"):
        ViTMVTSubnetBackbone(SUBNET["tiny"], size="huge")
    with pytest.raises(ArchError, match="out index 14"):
        ViTMVTSubnetBackbone(SUBNET["tiny"], size="tiny", out_indices=(14,))


def _tiny_genes() -> dict:
    from search_spaces.vit_mvt import load_subnet

    return load_subnet(SUBNET["tiny"])


def test_checkpoint_of_another_size_is_refused(tmp_path: Path, tiny_export: nn.Module) -> None:
    from automtl.mm.backbones import ViTMVTSubnetBackbone

    ckpt = _save_state(tmp_path / "t_det.pth", tiny_export.state_dict(), prefix="backbone.")
    small = ViTMVTSubnetBackbone(SUBNET["small"], size="small",
                                 init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    with pytest.raises(CheckpointError, match=r"t_det\.pth.*shapes differ.*'patch\.weight' is \(216, 64, 8, 8\)"):
        small.init_weights()
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, other)
    tiny = ViTMVTSubnetBackbone(SUBNET["tiny"], size="tiny", init_cfg=dict(type="Pretrained", checkpoint=str(other)))
    with pytest.raises(CheckpointError, match="no tensor fits"):
        tiny.init_weights()


def test_supernet_backbone_runs_the_subnet_it_exports(tmp_path: Path) -> None:
    from automtl.mm.backbones import ViTMVTSubnetBackbone, ViTMVTSupernetBackbone
    from search_spaces.vit_mvt import export_subnet

    torch.manual_seed(0)
    sup = ViTMVTSupernetBackbone("tiny", arch=SUBNET["tiny"], task="cls", out_indices=(2, -1), final_norm=True).eval()
    ckpt = _save_state(tmp_path / "e.pth", export_subnet(sup.supernet, task="cls").state_dict())
    sub = ViTMVTSubnetBackbone(SUBNET["tiny"], size="tiny", out_indices=(2, -1), final_norm=True,
                               init_cfg=dict(type="Pretrained", checkpoint=ckpt))
    sub.init_weights()
    sub.eval()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        for a, b in zip(sup(x), sub(x)):
            torch.testing.assert_close(a, b)
    # a supernet checkpoint (plain state dict) loads into a fresh supernet backbone
    raw = tmp_path / "supernet.pt"
    torch.save({"model": sup.supernet.state_dict()}, raw)
    again = ViTMVTSupernetBackbone("tiny", arch=SUBNET["tiny"], task="cls", out_indices=(2, -1), final_norm=True,
                                   init_cfg=dict(type="Pretrained", checkpoint=str(raw)))
    again.init_weights()
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x)[1], sup(x)[1])
    with pytest.raises(ConfigError, match="task 'det'"):
        ViTMVTSupernetBackbone("tiny", task="det", tasks=("cls", "seg"))


def test_moe_auxiliary_losses_stay_visible() -> None:
    """MoE layers keep reporting ``auxiliary_losses()`` from inside the mm backbone (found once)."""
    import random

    from automtl.mm.backbones import ViTMVTSubnetBackbone, ViTMVTSupernetBackbone
    from automtl.train.steps import auxiliary_loss_modules
    from search_spaces.vit_mvt import build_space

    torch.manual_seed(0)
    bb = ViTMVTSupernetBackbone("edge_moe_tiny", task="cls").train()
    bb(torch.randn(2, 3, 32, 32))
    found = auxiliary_loss_modules(bb)
    losses = {k: v for m in found for k, v in m.auxiliary_losses().items()}
    assert len(found) == 6 and len(losses) == 6 and all(torch.isfinite(v) for v in losses.values())
    genes = build_space("edge_moe_tiny", tasks=("cls",)).sample(random.Random(0))
    with pytest.raises(ConfigError, match="mixture-of-experts layers"):
        ViTMVTSubnetBackbone(genes, size="edge_moe_tiny")


class _Net(nn.Module):
    """A small ResNet-like backbone (strides 2, 4, 8) that torch.fx traces."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down2(self.b2(self.down(self.b1(self.stem(x)))))


def test_branched_backbone_is_the_task_branch(tmp_path: Path) -> None:
    from automtl.io import atomic_save
    from automtl.mm.backbones import AutoMTLBranchedBackbone
    from automtl.supernet import MTLModel, Policy

    torch.manual_seed(0)
    model = MTLModel(_Net(), {"seg": nn.Identity(), "depth": nn.Identity()}, input_shape=(1, 3, 32, 32))
    policy = Policy.random(model, seed=1)
    policy.save(tmp_path / "policy.json")
    atomic_save({"model": model.state_dict(), "tau": 1.0}, tmp_path / "post_train.pt")
    bb = AutoMTLBranchedBackbone(_Net(), str(tmp_path / "policy.json"), task="seg", out_indices=(0, 1, 2),
                                 input_shape=(1, 3, 32, 32),
                                 init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "post_train.pt")))
    bb.init_weights()
    assert bb.stage_strides == (2, 4, 8) and bb.out_strides == (2, 4, 8) and bb.out_channels == (8, 16, 32)
    # only the seg branch is kept: its parameters are what the policy's seg path uses
    assert sum(p.numel() for p in bb.parameters()) == model.count_params(policy)["seg"]
    model.eval()
    bb.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = bb(x)
        ref = model.features_all(x, policy, ["seg"])["seg"]
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 16, 16), (16, 8, 8), (32, 4, 4)]
    torch.testing.assert_close(maps[-1], ref)
    with pytest.raises(ConfigError, match="task 'normal'"):
        AutoMTLBranchedBackbone(_Net(), policy.to_dict(), task="normal", input_shape=(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="out index 3 outside the 3 stride levels"):
        AutoMTLBranchedBackbone(_Net(), policy.to_dict(), task="seg", out_indices=(3,), input_shape=(1, 3, 32, 32))
    depth = AutoMTLBranchedBackbone(_Net(), policy.to_dict(), task="depth", input_shape=(1, 3, 32, 32),
                                    init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "mm.pth")))
    _save_state(tmp_path / "mm.pth", bb.state_dict(), prefix="backbone.")
    with pytest.raises(CheckpointError, match=r"mm\.pth -> AutoMTLBranchedBackbone\(task='depth'\)"):
        depth.init_weights()  # the seg branch's weights are not the depth branch's


SHIPPED = [f"configs/nas/vit_mvt_{size}/task_{task}.py" for size in ("small", "base")
           for task in ("cls", "det", "seg")]


@pytest.mark.parametrize("config", SHIPPED)
def test_shipped_config_builds_and_runs_on_cpu(config: str) -> None:
    """S and B configs (T and the AutoMTL config train end to end in test_single_task_pipelines)."""
    from mmengine.registry import init_default_scope

    from automtl.mm.runner import load_mm_config

    cfg = load_mm_config(str(REPO / config))
    assert isinstance(cfg.get("data_root"), str)
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f"{cfg.default_scope}.registry")
    torch.manual_seed(0)
    model = registry.MODELS.build(cfg.model).eval()
    size = config.split("/")[2].removeprefix("vit_mvt_")
    assert model.backbone.size == size
    with torch.no_grad():
        data = model.data_preprocessor({"inputs": [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)]})
        if "det" in config:
            from mmdet.structures import DetDataSample

            meta = dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64),
                        scale_factor=(1.0, 1.0))
            pred = model.predict(data["inputs"], [DetDataSample(metainfo=meta)])[0].pred_instances
            flat = [pred.bboxes, pred.scores, pred.masks.float()]
            assert cfg.tta_model.type == "DetMaskTTAModel"
        else:
            out = model(data["inputs"], mode="tensor")
            flat = list(out) if isinstance(out, (tuple, list)) else [out]
    assert flat and all(torch.isfinite(t).all() for t in flat)
