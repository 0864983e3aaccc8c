"""Bad prototxt gives typed errors that name the file, the line and the layer."""
from __future__ import annotations

import pytest
import torch

from automtl.errors import (
    ExportError,
    GraphCycleError,
    GraphError,
    MissingInputShapeError,
    PrototxtSyntaxError,
    ShapeError,
    UnknownBlobError,
    UnsupportedLayerError,
)
from automtl.graph import from_module, load_prototxt, to_prototxt

HEAD = 'name: "bad"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
CONV = ('layer {{\n  name: "{name}"\n  type: "Convolution"\n  bottom: "{bottom}"\n  top: "{top}"\n'
        '  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 }}\n}}\n')


def test_syntax_error_names_file_and_line(write) -> None:
    path = write(HEAD + 'layer {\n  name: "c"\n  type: "Convolution"\n  bottm: "data"\n}\n')
    with pytest.raises(PrototxtSyntaxError) as info:
        load_prototxt(path)
    assert info.value.path == path and info.value.line == 10
    assert f"{path}:10" in str(info.value) and "bottm" in str(info.value)


def test_unclosed_brace(write) -> None:
    with pytest.raises(PrototxtSyntaxError):
        load_prototxt(write(HEAD + 'layer {\n  name: "c"\n'))


def test_unknown_layer_type_lists_supported(write) -> None:
    path = write(HEAD + CONV.format(name="c", bottom="data", top="c")
                 + 'layer {\n  name: "norm"\n  type: "LRN"\n  bottom: "c"\n  top: "n"\n'
                 + '  lrn_param { local_size: 5 }\n}\n')
    with pytest.raises(UnsupportedLayerError) as info:
        load_prototxt(path)
    err = info.value
    assert err.layer == "norm" and err.line == 14 and err.path == path
    assert "'LRN'" in str(err) and "Convolution" in str(err) and "Eltwise" in str(err)


def test_unproduced_bottom(write) -> None:
    path = write(HEAD + CONV.format(name="c1", bottom="data", top="c1")
                 + CONV.format(name="c2", bottom="nope", top="c2"))
    with pytest.raises(UnknownBlobError) as info:
        load_prototxt(path)
    assert info.value.layer == "c2" and info.value.line == 14 and "'nope'" in str(info.value)


def test_cycle(write) -> None:
    text = (HEAD + CONV.format(name="c1", bottom="data", top="c1") + CONV.format(name="a", bottom="b", top="a")
            + CONV.format(name="b", bottom="a", top="b"))
    with pytest.raises(GraphCycleError) as info:
        load_prototxt(write(text))
    assert info.value.layer == "a" and info.value.line == 14 and "b" in str(info.value)


def test_eltwise_shape_mismatch(write) -> None:
    text = (HEAD + CONV.format(name="c1", bottom="data", top="c1")
            + 'layer {\n  name: "p"\n  type: "Pooling"\n  bottom: "c1"\n  top: "p"\n'
              '  pooling_param { kernel_size: 2 stride: 2 }\n}\n'
            + 'layer {\n  name: "sum"\n  type: "Eltwise"\n  bottom: "c1"\n  bottom: "p"\n  top: "s"\n}\n')
    with pytest.raises(ShapeError) as info:
        load_prototxt(write(text))
    assert info.value.layer == "sum" and info.value.line == 21
    assert "[1, 4, 8, 8]" in str(info.value) and "[1, 4, 4, 4]" in str(info.value)


def test_conv_channel_mismatch_is_shape_error(write) -> None:
    text = HEAD + ('layer {\n  name: "c"\n  type: "Convolution"\n  bottom: "data"\n  top: "c"\n'
                   '  convolution_param { num_output: 4 kernel_size: 3 group: 2 }\n}\n')
    with pytest.raises(ShapeError, match="group 2") as info:
        load_prototxt(write(text))
    assert info.value.layer == "c" and info.value.line == 7


def test_kernel_larger_than_input(write) -> None:
    text = HEAD + ('layer {\n  name: "c"\n  type: "Convolution"\n  bottom: "data"\n  top: "c"\n'
                   '  convolution_param { num_output: 4 kernel_size: 11 }\n}\n')
    with pytest.raises(ShapeError) as info:
        load_prototxt(write(text))
    assert info.value.layer == "c" and info.value.line == 7 and info.value.path.endswith("net.prototxt")


def test_missing_input_shape(write) -> None:
    with pytest.raises(MissingInputShapeError) as info:
        load_prototxt(write('input: "data"\n' + CONV.format(name="c", bottom="data", top="c")))
    assert info.value.line == 1 and info.value.layer == "data"
    with pytest.raises(MissingInputShapeError, match="declares no input"):
        load_prototxt(write(CONV.format(name="c", bottom="data", top="c")))


def test_errors_are_graph_errors() -> None:
    for cls in (PrototxtSyntaxError, UnsupportedLayerError, UnknownBlobError, GraphCycleError, ShapeError,
                MissingInputShapeError, ExportError):
        assert issubclass(cls, GraphError)


def test_export_of_unrepresentable_op_names_node() -> None:
    import torch
    from torch import nn

    graph = from_module(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU()), torch.randn(1, 3, 4, 4))
    with pytest.raises(ExportError) as info:
        to_prototxt(graph)
    assert info.value.layer == "1" and "gelu" in str(info.value)
    with pytest.raises(ExportError, match="dialect"):
        to_prototxt(graph, dialect="onnx")


def test_failed_export_leaves_no_file(tmp_path) -> None:
    import torch
    from torch import nn

    graph = from_module(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU()), torch.randn(1, 3, 4, 4))
    with pytest.raises(ExportError):
        to_prototxt(graph, tmp_path / "out.prototxt")
    assert list(tmp_path.iterdir()) == []


def test_broadcasting_multiply_is_not_exported() -> None:
    from automtl.backbones import zoo_backbone as backbone

    graph = from_module(backbone("efficientnet_b0"), torch.zeros(1, 3, 32, 32))
    with pytest.raises(ExportError, match="equal shapes") as info:
        to_prototxt(graph)
    assert info.value.layer == "features.1.0.block.1.mul"
