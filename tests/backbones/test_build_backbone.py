"""The one backbone builder: every spelling, trunks cut by output stride, clear errors."""
import pytest
import torch
import torchvision
from torch import nn

from automtl.backbones import ZOO, TinyResNet, build_backbone, trunk, zoo_backbone
from automtl.errors import ConfigError

torch.set_num_threads(1)


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _stride(net: nn.Module, side: int = 64) -> int:
    with torch.no_grad():
        return side // net.eval()(torch.zeros(1, 3, side, side)).shape[-1]


@pytest.mark.parametrize("name, params", [("deeplab_resnet34", 21_284_672), ("mobilenet_v2", 2_223_872),
                                          ("mnasnet1_0", 3_102_312)])
def test_zoo_backbones_keep_the_published_counts(name, params):
    assert _n(zoo_backbone(name)) == params


def test_mobilenet_keeps_its_features_not_two_children_less():
    net = build_backbone("torchvision:mobilenet_v2")
    assert list(net._modules) == ["features"] and _stride(net) == 32
    assert net.out_channels == 1280


def test_resnet_trunk_drops_pool_and_classifier_and_dilates_by_output_stride():
    plain = build_backbone("torchvision:resnet18")
    assert list(plain._modules)[-1] == "layer4" and _stride(plain) == 32
    os16 = build_backbone(dict(type="torchvision", name="resnet18", output_stride=16))
    os8 = build_backbone(dict(type="torchvision", name="resnet18", output_stride=8))
    assert (_stride(os16), _stride(os8)) == (16, 8)
    assert _n(os16) == _n(os8) == _n(plain)


def test_non_resnet_is_cut_inside_its_sequential_at_the_output_stride():
    net = build_backbone(dict(type="torchvision", name="mobilenet_v2", output_stride=8))
    assert _stride(net) == 8
    assert len(net.features) < len(torchvision.models.mobilenet_v2().features)


def test_trunk_of_a_model_with_linear_blocks_stops_at_global_pooling():
    net = trunk(torchvision.models.convnext_tiny())
    assert list(net._modules) == ["features"]


def test_forms_registered_prototxt_module():
    assert isinstance(build_backbone(dict(type="TinyResNet", widths=(8, 16))), TinyResNet)
    module = nn.Conv2d(3, 4, 3)
    assert build_backbone(module) is module
    assert build_backbone("prototxt/resnet18.prototxt") == "prototxt/resnet18.prototxt"
    assert build_backbone("prototxt:prototxt/resnet18.prototxt") == "prototxt/resnet18.prototxt"
    assert set(ZOO) >= {"deeplab_resnet34", "resnet18", "mobilenet_v2", "mnasnet1_0"}


@pytest.mark.parametrize("spec, match", [
    ("resnet-eighteen", "unknown backbone"),
    ("prototxt:missing.prototxt", "prototxt file not found"),
    (dict(type="torchvision", name="resnet18", output_stride=4), "output stride 8, 16 or 32"),
    (dict(type="NoSuchNet"), "unknown backbone type 'NoSuchNet'"),
    (3, "a backbone is a string"),
])
def test_bad_specs_are_typed_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_backbone(spec)


def test_timm_without_timm_or_unknown_name_is_a_config_error():
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="timm is not installed"):
            build_backbone("timm:resnet18")
    else:
        with pytest.raises(ConfigError):
            build_backbone("timm:no_such_model_name")
