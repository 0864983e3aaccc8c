"""load_prototxt: stock Caffe and the AutoMTL dialect; shipped backbones; round trips."""
from __future__ import annotations

import warnings

import pytest
import torch
from graph_fixtures import AUTOMTL, PROTOTXT, STOCK_CAFFE
from torch import nn

from automtl.backbones import zoo_backbone as backbone
from automtl.graph import copy_weights, load_prototxt, loads_prototxt, node_param_count, to_prototxt

SHIPPED = {  # file -> (backbone name, conv+BN parameters, output shape at 224)
    "deeplab_resnet34.prototxt": ("deeplab_resnet34", 21_284_672, (1, 512, 28, 28)),
    "resnet18.prototxt": ("resnet18", 11_176_512, (1, 512, 7, 7)),
    "mobilenetv2.prototxt": ("mobilenet_v2", 2_223_872, (1, 1280, 7, 7)),
    "mnasnet.prototxt": ("mnasnet1_0", 3_102_312, (1, 1280, 7, 7)),
}


@pytest.mark.parametrize("filename", sorted(SHIPPED))
def test_shipped_backbones(filename: str) -> None:
    name, params, out_shape = SHIPPED[filename]
    graph = load_prototxt(PROTOTXT / filename)
    assert graph.param_count() == params
    assert graph.output_shape == out_shape
    assert all(n.op in ("input", "conv", "batch_norm", "relu", "relu6", "max_pool", "add") for n in graph)
    assert {n.op for n in graph if node_param_count(n)} == {"conv", "batch_norm"}  # conv + BN weights only
    # the file is exactly the torchvision backbone: same outputs once its weights are loaded
    reference = backbone(name).eval()
    net = graph.to_module()
    copy_weights(reference, net, by="name")
    net.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=1e-4, atol=1e-4)


def test_deeplab_resnet34_is_dilated() -> None:
    graph = load_prototxt(PROTOTXT / "deeplab_resnet34.prototxt")
    assert graph["layer3.1.conv1"].attrs["dilation"] == (2, 2)
    assert graph["layer4.1.conv2"].attrs["dilation"] == (4, 4)
    assert graph["layer4.0.conv1"].attrs["dilation"] == (2, 2)  # first block keeps the previous rate
    assert all(n.attrs["stride"] == (1, 1) for n in graph if n.name.startswith(("layer3", "layer4"))
               and n.op == "conv")
    assert sum(n.op in ("conv", "batch_norm") for n in graph) == 72


def test_stock_caffe(write) -> None:
    graph = load_prototxt(write(STOCK_CAFFE))
    ops = {n.name: n.op for n in graph}
    # BatchNorm + Scale folds into one affine BN; the Scale layer leaves no node
    assert ops["conv1/bn"] == "batch_norm" and graph["conv1/bn"].attrs["affine"] is True
    assert "conv1/scale" not in graph and graph["relu1"].inputs == ("conv1/bn",)
    assert graph["conv1/bn"].attrs["eps"] == 0.001
    assert graph["conv1"].attrs["padding"] == (1, 2) and graph["conv1"].attrs["kernel_size"] == (3, 5)
    assert graph["conv1"].shape == (2, 8, 9, 9)
    # Caffe rounds pooling up: (9 - 3) / 2 + 1 = 4 either way; check ceil on an odd case below
    assert graph["pool1"].attrs["ceil_mode"] is True and graph["pool1"].shape == (2, 8, 4, 4)
    assert graph["conv2"].inputs == ("pool1",) and graph["conv2"].attrs["groups"] == 4  # Split aliases
    assert ops["leaky"] == "leaky_relu" and graph["leaky"].attrs["negative_slope"] == pytest.approx(0.1)
    assert graph["sum"].attrs["coeffs"] == (0.5, 2.0) and ops["prod"] == "mul" and ops["emax"] == "max"
    assert graph["cat"].shape == (2, 16, 4, 4) and graph["prelu"].attrs["num_parameters"] == 16
    assert ops["up"] == "deconv" and graph["up"].shape == (2, 4, 8, 8)
    assert ops["gap"] == "global_pool" and graph["gap"].shape == (2, 4, 1, 1)
    assert ops["fc/flatten"] == "flatten" and graph["fc"].attrs["in_features"] == 64  # implicit flatten
    assert graph["drop"].attrs["p"] == pytest.approx(0.3)
    assert graph.outputs == ["prob", "flat"]
    assert graph["conv1"].source.endswith("net.prototxt:8")
    out = graph.to_module().eval()(torch.randn(2, 3, 17, 17))
    assert out[0].shape == (2, 10) and out[1].shape == (2, 4)


def test_eltwise_coefficients_compute(write) -> None:
    graph = load_prototxt(write(STOCK_CAFFE))
    net = graph.to_module()
    a, b = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(net.layer("sum")(a, b), 0.5 * a + 2 * b)


def test_pooling_rounds_up_like_caffe(write) -> None:
    text = ('input: "x" input_shape { dim: 1 dim: 1 dim: 6 dim: 6 }\n'
            'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { kernel_size: 3 stride: 2 } }\n'
            'layer { name: "q" type: "Pooling" bottom: "x" top: "q" '
            'pooling_param { kernel_size: 3 stride: 2 round_mode: FLOOR } }\n')
    graph = load_prototxt(write(text))
    assert graph["p"].shape == (1, 1, 3, 3)  # ceil((6 - 3) / 2) + 1
    assert graph["q"].shape == (1, 1, 2, 2)  # floor


def test_automtl_dialect_quirks(write) -> None:
    path = write(AUTOMTL)
    with pytest.warns(UserWarning, match="binding it to the unproduced bottom 'data'"):
        graph = load_prototxt(path)
    assert graph.inputs == ["blob1"] and graph["blob1"].shape == (10, 3, 16, 16)
    assert graph["conv1"].inputs == ("blob1",)
    bn = graph["batch_norm1"].attrs
    assert bn["affine"] is True and bn["momentum"] == 0.1 and bn["eps"] == 1e-5
    assert graph["max_pool1"].attrs["ceil_mode"] is False and graph["max_pool1"].shape == (10, 4, 8, 8)
    assert graph.param_count() == 4 * 3 * 9 + 2 * 4


@pytest.mark.parametrize("dialect", ["automtl", "caffe"])
@pytest.mark.parametrize("source", ["stock", "automtl", "deeplab_resnet34.prototxt", "mobilenetv2.prototxt"])
def test_round_trip(source: str, dialect: str, write, tmp_path) -> None:
    text = {"stock": STOCK_CAFFE, "automtl": AUTOMTL}.get(source) or (PROTOTXT / source).read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = load_prototxt(write(text))
        out1 = tmp_path / "out1.prototxt"
        to_prototxt(first, out1, dialect=dialect)
        second = load_prototxt(out1)
        text2 = to_prototxt(second, tmp_path / "out2.prototxt", dialect=dialect)
        third = loads_prototxt(text2)
    assert second == first and third == second
    assert text2 == out1.read_text()
    assert second.param_count() == first.param_count()


def test_shipped_files_are_what_the_exporter_writes() -> None:
    from automtl.graph import from_module

    for filename, (name, _, _) in SHIPPED.items():
        graph = from_module(backbone(name), torch.zeros(1, 3, 224, 224), name=name,
                            input_names=["data"])
        assert to_prototxt(graph) == (PROTOTXT / filename).read_text(), filename


def test_inline_stock_caffe_whole_network_runs(write) -> None:
    graph = load_prototxt(write(STOCK_CAFFE))
    net = graph.to_module()
    assert isinstance(net, nn.Module)
    assert sum(p.numel() for p in net.parameters()) == graph.param_count()


def test_train_only_layers_are_skipped_and_plain_bn_has_no_affine(write) -> None:
    text = '''name: "phases"
layer {
  name: "train_data"
  type: "Data"
  top: "data"
  include { phase: TRAIN }
  data_param { source: "train_lmdb" batch_size: 32 backend: LMDB }
  transform_param { mirror: true crop_size: 8 }
}
layer {
  name: "data"
  type: "Input"
  top: "data"
  include { phase: TEST }
  input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }
}
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  convolution_param { num_output: 2 kernel_size: 1 }
}
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "conv"
  top: "loss"
  exclude { phase: TEST }
}
'''
    graph = load_prototxt(write(text))
    assert [n.name for n in graph] == ["data", "conv", "bn"]
    assert graph["bn"].attrs["affine"] is False and graph.param_count() == 3 * 2 + 2
    assert graph["bn"].attrs["momentum"] == pytest.approx(0.001)  # 1 - moving_average_fraction


def test_v1_layers_format_gets_a_hint(write) -> None:
    from automtl.errors import PrototxtSyntaxError

    with pytest.raises(PrototxtSyntaxError, match="V1 format"):
        load_prototxt(write('input: "data"\nlayers { name: "c" type: CONVOLUTION }\n'))
