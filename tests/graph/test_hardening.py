"""Hardening of the prototxt loader: bad settings caught at load, size limit, linear-time ordering."""
from __future__ import annotations

import re
import sys
import warnings
from typing import Any

import pytest
import torch
from graph_fixtures import AUTOMTL, STOCK_CAFFE, join_layers, relu_chain, split_layers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from automtl.errors import AutoMTLError, ConfigError, GraphCycleError, ModelTooLargeError, ShapeError
from automtl.graph import limits, load_prototxt, loads_prototxt
from automtl.graph import prototxt as prototxt_mod
from automtl.supernet.model import MTLModel

HEAD = 'name: "bad"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'


def layer(name: str, typ: str, bottom: str, params: str = "") -> str:
    """One layer block, 6 lines (its ``layer {`` line is the one errors name)."""
    return f'layer {{\n  name: "{name}"\n  type: "{typ}"\n  bottom: "{bottom}"\n  top: "{name}"\n  {params}\n}}\n'


def expect_shape_error(path: str, layer_name: str, line: int, match: str) -> ShapeError:
    """Load ``path``: a ShapeError naming the file, the line and the layer, whose message matches."""
    with pytest.raises(ShapeError, match=match) as info:
        load_prototxt(path)
    err = info.value
    assert (err.path, err.line, err.layer) == (path, line, layer_name)
    assert f"{path}:{line}" in str(err) and f"layer '{layer_name}'" in str(err)
    return err


# ---- settings that used to fail only when the network ran ----------------------------------

def test_scale_on_a_1d_input(write) -> None:
    path = write('input: "data"\ninput_shape { dim: 3 }\n' + layer("s", "Scale", "data", "scale_param { }"))
    expect_shape_error(path, "s", 3, r"Scale needs a bottom with a channel axis .*\[3\]")


@pytest.mark.parametrize("eps", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("dialect", ["caffe", "automtl"])
def test_batch_norm_eps_must_be_positive(write, eps: str, dialect: str) -> None:
    extra = " track_running_stats: true affine: true" if dialect == "automtl" else ""
    path = write(HEAD + layer("bn", "BatchNorm", "data", f"batch_norm_param {{ eps: {eps}{extra} }}"))
    expect_shape_error(path, "bn", 7, "eps must be positive and finite")


@pytest.mark.parametrize(("typ", "params", "match"), [
    ("BatchNorm", "batch_norm_param { momentum: nan track_running_stats: true }", r"momentum .* \[0, 1\], got nan"),
    ("BatchNorm", "batch_norm_param { moving_average_fraction: -1 }", r"momentum .* \[0, 1\], got 2.0"),
    ("ReLU", "relu_param { negative_slope: nan }", "negative_slope must be a finite number"),
])
def test_settings_out_of_range(write, typ: str, params: str, match: str) -> None:
    """Found by the fuzzer: NaN momenta/slopes loaded, then gave NaN outputs (and graphs unequal to themselves)."""
    expect_shape_error(write(HEAD + layer("x", typ, "data", params)), "x", 7, match)


def test_eltwise_coefficients_must_be_finite(write) -> None:
    text = HEAD + layer("a", "ReLU", "data") + ('layer {\n  name: "sum"\n  type: "Eltwise"\n  bottom: "a"\n'
                                               '  bottom: "data"\n  top: "sum"\n'
                                               '  eltwise_param { operation: SUM coeff: 1 coeff: inf }\n}\n')
    expect_shape_error(write(text), "sum", 14, "coeff must be a finite number, got inf")


def test_huge_convolution_pad(write) -> None:
    path = write(HEAD + layer("c", "Convolution", "data",
                              "convolution_param { num_output: 4 kernel_size: 3 pad: 100000 }"))
    expect_shape_error(path, "c", 7, r"pad \[100000, 100000\] must be smaller than .* kernel extent \[3, 3\]")


def test_deconvolution_stride_wider_than_its_kernel(write) -> None:
    """Found by the fuzzer: stride 100000 ran for minutes in PyTorch's CPU kernel (time ∝ stride²)."""
    path = write(HEAD + layer("up", "Deconvolution", "data",
                              "convolution_param { num_output: 1 kernel_size: 3 stride_h: 100000 stride_w: 2 }"))
    expect_shape_error(path, "up", 7, r"stride \[100000, 2\] must not exceed the .* kernel extent \[3, 3\]")


def test_pad_up_to_the_dilated_kernel_is_fine(write) -> None:
    graph = load_prototxt(write(HEAD + layer("c", "Convolution", "data",
                                             "convolution_param { num_output: 4 kernel_size: 3 dilation: 2 pad: 4 }")))
    assert graph["c"].shape == (1, 4, 12, 12)


@pytest.mark.parametrize("dims", [[1, 3, 1, 1], [1, 3]])
def test_batch_norm_without_running_stats_needs_two_values_per_channel(write, dims: list[int]) -> None:
    head = 'input: "data"\n' + "".join(f"input_dim: {d}\n" for d in dims)
    bn = layer("bn", "BatchNorm", "data", "batch_norm_param { track_running_stats: false affine: true }")
    expect_shape_error(write(head + bn), "bn", len(dims) + 2, "more than 1 value per channel")
    dims[0] = 2  # a batch of two gives two values per channel: fine
    head = 'input: "data"\n' + "".join(f"input_dim: {d}\n" for d in dims)
    graph = load_prototxt(write(head + bn))
    assert graph.to_module()(torch.randn(dims)).shape == tuple(dims)


# ---- the size limit -----------------------------------------------------------------------

HUGE = HEAD + layer("c", "Convolution", "data", "convolution_param { num_output: 1000000000 kernel_size: 3 pad: 1 }")


def _no_build(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a module was built: the size check must come first")


def test_huge_network_is_refused_before_allocating(write, monkeypatch) -> None:
    path = write(HUGE)
    graph = load_prototxt(path)  # loading is fine: shapes are inferred on the meta device
    monkeypatch.setattr("automtl.graph.module.GraphModule.__init__", _no_build)
    monkeypatch.setattr("automtl.graph.module.build_layer", _no_build)
    with pytest.raises(ModelTooLargeError) as info:
        graph.to_module()
    err = info.value
    params, acts = 4 * (1_000_000_000 * 27 + 1_000_000_000), 4 * (1_000_000_000 * 64 + 3 * 64)  # conv + input
    assert err.size == params + acts and err.limit < err.size
    assert (err.path, err.line, err.layer) == (path, 7, "c")
    assert f"{params + acts} bytes" in str(err) and "342.7 GiB" in str(err) and f"{err.limit} bytes" in str(err)
    assert "AUTOMTL_MAX_MODEL_BYTES" in str(err) and "of available memory" in str(err)


def test_mtl_model_checks_the_size_before_building(write, monkeypatch) -> None:
    path = write(HUGE)
    monkeypatch.setattr("automtl.supernet.model.GraphModule", _no_build)
    with pytest.raises(ModelTooLargeError) as info:
        MTLModel(path, {"a": nn.Identity(), "b": nn.Identity()})
    assert info.value.size == 3 * 4 * 28_000_000_000 + 4 * (64_000_000_000 + 192)  # weights: shared + one per task
    assert info.value.layer == "c"


def test_limit_from_keyword_environment_and_memory(write, monkeypatch) -> None:
    graph = load_prototxt(write(HEAD + layer("c", "Convolution", "data",
                                             "convolution_param { num_output: 4 kernel_size: 3 }")))
    size = limits.model_size(graph).total
    assert size == 4 * (4 * 27 + 4) + 4 * (3 * 64 + 4 * 36)
    assert graph.to_module(max_bytes=size) is not None
    with pytest.raises(ModelTooLargeError, match=f"limit of {size - 1} bytes .*max_bytes="):
        graph.to_module(max_bytes=size - 1)
    monkeypatch.setenv("AUTOMTL_MAX_MODEL_BYTES", "1K")
    with pytest.raises(ModelTooLargeError, match=r"limit of 1024 bytes \(1.0 KiB, \$AUTOMTL_MAX_MODEL_BYTES\)"):
        graph.to_module()
    assert graph.to_module(max_bytes=10**6) is not None  # the keyword wins over the environment
    monkeypatch.setenv("AUTOMTL_MAX_MODEL_BYTES", "lots")
    with pytest.raises(ConfigError, match="AUTOMTL_MAX_MODEL_BYTES"):
        graph.to_module()
    monkeypatch.delenv("AUTOMTL_MAX_MODEL_BYTES")
    monkeypatch.setattr(limits, "available_memory", lambda: 2000)
    with pytest.raises(ModelTooLargeError, match=r"limit of 1000 bytes .*50% of available memory"):
        graph.to_module()
    monkeypatch.setattr(limits, "available_memory", lambda: None)  # unknown: no limit
    assert graph.to_module() is not None


def test_meta_device_builds_are_not_limited(write) -> None:
    graph = load_prototxt(write(HUGE))
    with torch.device("meta"):
        net = graph.to_module(max_bytes=1)
    assert net.layer("c").weight.is_meta


@pytest.mark.parametrize(("text", "value"), [("123", 123), ("1e9", 10**9), ("512M", 512 * 2**20),
                                             ("8GiB", 8 * 2**30), (" 2 kb ", 2048)])
def test_parse_bytes(text: str, value: int) -> None:
    assert limits.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "-5", "0", "12X", "inf", "1e999"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="AUTOMTL_MAX_MODEL_BYTES"):
        limits.parse_bytes(text)


def test_available_memory_is_known_here() -> None:
    avail = limits.available_memory()
    assert avail is None or avail > 0
    if sys.platform.startswith("linux"):
        assert avail is not None


# ---- loading time: linear in the number of layers, whatever their order ----------------------

def _builder(text: str) -> prototxt_mod._Builder:
    return prototxt_mod._Builder(prototxt_mod.parse_net(text, "chain"), "chain", text)


def test_ordering_steps_are_linear_in_reversed_files(monkeypatch) -> None:
    built: list[str] = []
    original = prototxt_mod._Builder.layer
    monkeypatch.setattr(prototxt_mod._Builder, "layer", lambda self, lay: (built.append(lay.name), original(self, lay)))
    steps = {}
    for n in (500, 2000):
        built.clear()
        b = _builder(relu_chain(n, reverse=True))
        graph = b.build()
        assert [node.name for node in graph][1:] == [f"l{i}" for i in range(n)]
        assert sorted(built) == sorted(f"l{i}" for i in range(n))  # every layer built once
        steps[n] = b.steps
    assert steps == {500: 2 * 500 - 1, 2000: 2 * 2000 - 1}  # one pop per layer + one edge per link


def _python_calls(text: str) -> int:
    """Python and builtin function calls made while building a graph from ``text`` (parsing excluded)."""
    net = prototxt_mod.parse_net(text, "chain")
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        count += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        prototxt_mod._Builder(net, "chain", text).build()
    finally:
        sys.setprofile(None)
    return count


def test_loading_work_grows_linearly() -> None:
    """4× the layers, listed in reverse: about 4× the calls (the old multi-pass loop made ~15×)."""
    small, large = _python_calls(relu_chain(300, reverse=True)), _python_calls(relu_chain(1200, reverse=True))
    assert large / small < 5


def test_repeated_names_stay_linear() -> None:
    text = HEAD + "".join(f'layer {{ name: "r" type: "ReLU" bottom: "{"r" if i else "data"}" top: "r" }}\n'
                          for i in range(400))
    small = _python_calls(text)
    large = _python_calls(text + "".join('layer { name: "r" type: "ReLU" bottom: "r" top: "r" }\n'
                                          for _ in range(1200)))
    graph = loads_prototxt(text)
    assert [n.name for n in graph][-2:] == ["r_398", "r_399"]
    assert large / small < 5


class _MultiPass(prototxt_mod._Builder):
    """The loader's earlier ordering: sweep the file until no layer can be built (quadratic)."""

    def order(self, active: list[Any]) -> None:
        pending = list(active)
        while pending:
            rest = []
            for lay in pending:
                if all(b in self.blobs for b in lay.msg.bottom):
                    self.layer(lay)
                else:
                    rest.append(lay)
            if len(rest) == len(pending):
                self.raise_cycle(rest)
            pending = rest


def _outcome(builder: type[prototxt_mod._Builder], text: str) -> Any:
    """The graph ``builder`` makes of ``text``, or the type and message of its typed error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return builder(prototxt_mod.parse_net(text, "x"), "x", text).build()
        except AutoMTLError as exc:
            return type(exc), str(exc)


@st.composite
def shuffled(draw: st.DrawFn) -> str:
    """A fixture net (optionally with one layer made a cycle or an unknown bottom), layers shuffled."""
    text = draw(st.sampled_from([STOCK_CAFFE, AUTOMTL, relu_chain(6)]))
    header, blocks = split_layers(text)
    if draw(st.booleans()):  # read another layer's top (maybe a later one: a cycle) or a blob nobody makes
        blob = draw(st.sampled_from(re.findall(r'top: "([^"]+)"', text) + ["nowhere"]))
        i = draw(st.integers(0, len(blocks) - 1))
        blocks[i] = [re.sub(r'bottom: "[^"]*"', f'bottom: "{blob}"', line, count=1) for line in blocks[i]]
    return join_layers(header, draw(st.permutations(blocks)))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled())
def test_ordering_matches_the_sweeping_loader(text: str) -> None:
    """Same graph (in-place blobs resolved alike) or the same cycle / unknown-blob error as before."""
    assert _outcome(prototxt_mod._Builder, text) == _outcome(_MultiPass, text)


def test_cycle_error_is_unchanged() -> None:
    text = relu_chain(3) + 'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\n' \
                           'layer { name: "b" type: "ReLU" bottom: "a" top: "b" }\n'
    with pytest.raises(GraphCycleError, match=r"cycle among: a, b\)") as info:
        loads_prototxt(text)
    assert info.value.layer == "a" and info.value.line == 10
