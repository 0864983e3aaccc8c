"""Fuzzing the prototxt loader: any mutation of a valid file loads, builds and runs, or raises a typed error.

Bases: the shipped backbones (input shrunk to 32×32), the two fixture nets and small generated
nets. Bounded for CI; for a long run by hand::

    AUTOMTL_FUZZ_EXAMPLES=5000 AUTOMTL_FUZZ_SEED=1 .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/graph/test_fuzz.py
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from datetime import timedelta

import torch
from graph_fixtures import AUTOMTL, PROTOTXT, STOCK_CAFFE, join_layers, split_layers
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from automtl.errors import AutoMTLError, ExportError, GraphError
from automtl.graph import Graph, dumps_prototxt, loads_prototxt

EXAMPLES = int(os.environ.get("AUTOMTL_FUZZ_EXAMPLES", "300"))
SEED = os.environ.get("AUTOMTL_FUZZ_SEED")  # unset: derandomized (the same examples on every run)
MAX_BYTES = 128 * 2**20  # bigger mutants are refused by the size check (ModelTooLargeError), not run
SHIPPED = [re.sub(r"input_dim: 224\b", "input_dim: 32", p.read_text()) for p in sorted(PROTOTXT.glob("*.prototxt"))]

# ---- small generated nets -----------------------------------------------------------------

Shape = tuple[int, ...]
Snippet = tuple[str, str, list[str], Shape]  # type, params, extra bottoms, output shape


def _conv(draw: st.DrawFn, s: Shape, blobs: dict[str, Shape]) -> Snippet:
    """A Convolution (about the right shape) or a Deconvolution."""
    k, stride, out = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 6))
    pad = draw(st.integers(0, k - 1))
    if draw(st.booleans()):
        size = tuple((d + 2 * pad - k) // stride + 1 for d in s[2:])
        return "Convolution", f"convolution_param {{ num_output: {out} kernel_size: {k} stride: {stride} " \
                              f"pad: {pad} }}", [], (s[0], out, *size)
    size = tuple((d - 1) * stride + k for d in s[2:])
    return "Deconvolution", f"convolution_param {{ num_output: {out} kernel_size: {k} stride: {stride} }}", [], \
        (s[0], out, *size)


def _pool(draw: st.DrawFn, s: Shape, blobs: dict[str, Shape]) -> Snippet:
    """MAX/AVE pooling, windowed (Caffe rounds up) or global."""
    pool = draw(st.sampled_from(["MAX", "AVE"]))
    if draw(st.booleans()):
        return "Pooling", f"pooling_param {{ pool: {pool} global_pooling: true }}", [], (*s[:2], 1, 1)
    k, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    size = tuple(-(-(d - k) // stride) + 1 for d in s[2:])
    return "Pooling", f"pooling_param {{ pool: {pool} kernel_size: {k} stride: {stride} }}", [], (*s[:2], *size)


def _norm(draw: st.DrawFn, s: Shape, blobs: dict[str, Shape]) -> Snippet:
    """A BatchNorm (stock or AutoMTL fields) or a Scale."""
    choice = draw(st.sampled_from(["caffe", "automtl", "scale"]))
    if choice == "scale":
        return "Scale", "scale_param { bias_term: true }", [], s
    if choice == "caffe":
        return "BatchNorm", "batch_norm_param { use_global_stats: true eps: 0.001 }", [], s
    track = draw(st.sampled_from(["true", "false"]))
    return "BatchNorm", f"batch_norm_param {{ track_running_stats: {track} eps: 1e-05 momentum: 0.1 }}", [], s


def _act(draw: st.DrawFn, s: Shape, blobs: dict[str, Shape]) -> Snippet:
    """An element-wise activation (or Dropout / Softmax)."""
    typ, params = draw(st.sampled_from([("ReLU", ""), ("ReLU", "relu_param { negative_slope: 0.1 }"),
                                        ("ReLU6", ""), ("Sigmoid", ""), ("TanH", ""), ("PReLU", ""),
                                        ("Swish", ""), ("Dropout", "dropout_param { dropout_ratio: 0.2 }"),
                                        ("Softmax", "")]))
    return typ, params, [], s


def _join(draw: st.DrawFn, s: Shape, blobs: dict[str, Shape]) -> Snippet:
    """Eltwise with a blob of the same shape, or Concat along channels."""
    same = sorted(b for b, shape in blobs.items() if shape == s)
    other = draw(st.sampled_from(same)) if same else "data"
    if draw(st.booleans()):
        op = draw(st.sampled_from(["SUM", "PROD", "MAX"]))
        return "Eltwise", f"eltwise_param {{ operation: {op} }}", [other], s
    return "Concat", "concat_param { axis: 1 }", [other], (s[0], 2 * s[1], *s[2:]) if len(s) > 1 else s


def _flat(draw: st.DrawFn, s: Shape, blobs: dict[str, Shape]) -> Snippet:
    """InnerProduct (flattening like Caffe) or Flatten."""
    if draw(st.booleans()):
        out = draw(st.integers(1, 5))
        return "InnerProduct", f"inner_product_param {{ num_output: {out} }}", [], (s[0], out)
    size = 1
    for d in s[1:]:
        size *= d
    return "Flatten", "", [], (s[0], size)


SNIPPETS: list[Callable[[st.DrawFn, Shape, dict[str, Shape]], Snippet]] = [_conv, _pool, _norm, _act, _join, _flat]
SNIPPETS_2D = [_norm, _act, _join, _flat]  # after a flatten: no spatial layers (they would only fail)


def _input_header(draw: st.DrawFn, shape: Shape) -> str:
    """The input declared as input_dim, input_shape or an Input layer."""
    style = draw(st.sampled_from(["input_dim", "input_shape", "Input"]))
    if style == "input_dim":
        return 'name: "gen"\ninput: "data"\n' + "".join(f"input_dim: {d}\n" for d in shape)
    dims = " ".join(f"dim: {d}" for d in shape)
    if style == "input_shape":
        return f'name: "gen"\ninput: "data"\ninput_shape {{ {dims} }}\n'
    return (f'name: "gen"\nlayer {{\n  name: "data"\n  type: "Input"\n  top: "data"\n'
            f'  input_param {{ shape {{ {dims} }} }}\n}}\n')


@st.composite
def small_net(draw: st.DrawFn) -> str:
    """A chain of 1-8 layers of many types (about valid: shapes are tracked loosely), some in place."""
    shape: Shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    text, last, blobs = _input_header(draw, shape), "data", {"data": shape}
    for i in range(draw(st.integers(1, 8))):
        snippets = SNIPPETS if len(blobs[last]) == 4 else SNIPPETS_2D
        typ, params, extra, out = draw(st.sampled_from(snippets))(draw, blobs[last], blobs)
        inplace = not extra and out == blobs[last] and last != "data" and draw(st.booleans())
        top = last if inplace else f"b{i}"
        bottoms = "".join(f'  bottom: "{b}"\n' for b in [last, *extra])
        text += f'layer {{\n  name: "l{i}"\n  type: "{typ}"\n{bottoms}  top: "{top}"\n  {params}\n}}\n'
        last, blobs[top] = top, out
    return text


# ---- mutations ----------------------------------------------------------------------------

_TOKEN = re.compile(r'"[^"\n]*"|-?\d+(?:\.\d+)?(?:e-?\d+)?|[A-Za-z_]+|[{}:\[\],]|\n')
_NUMBERS = ["0", "1", "-1", "2", "3", "7", "65", "100000", "1000000000", "4294967296", "0.5", "1e9", "1e-45",
            "nan", "inf", "-inf", "0.0", "-0.5"]
_STRINGS = ['"data"', '"blob1"', '"conv1"', '"conv1/bn"', '"sum"', '"b"', '"b0"', '"b1"', '"fc"', '""',
            '"Convolution"', '"Deconvolution"', '"Pooling"', '"Eltwise"', '"InnerProduct"', '"Concat"', '"Scale"',
            '"Split"', '"Input"', '"BatchNorm"', '"Flatten"', '"Softmax"', '"Bogus"']
_WORDS = ["{", "}", ":", "layer", "bottom", "top", "pool", "MAX", "AVE", "FLOOR", "kernel_size", "num_output",
          "group", "stride", "pad", "axis", "global_pooling", "true", "false", "coeff", "dilation", "dim"]
_WINDOW = ["kernel_size", "stride", "pad", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w"]
_FIELDS = {  # fields each *_param message has (another message's field is a syntax error: tried too, less often)
    "convolution": ["num_output", "group", "dilation", "bias_term", *_WINDOW],
    "pooling": ["global_pooling", "ceil_mode", *_WINDOW],
    "batch_norm": ["eps", "momentum", "moving_average_fraction", "track_running_stats", "affine",
                   "use_global_stats"],
    "inner_product": ["num_output", "axis", "bias_term", "transpose"],
    "scale": ["axis", "num_axes", "bias_term"], "eltwise": ["coeff"], "concat": ["axis", "concat_dim"],
    "relu": ["negative_slope"], "dropout": ["dropout_ratio"], "flatten": ["axis", "end_axis"],
    "softmax": ["axis"], "swish": ["beta"], "prelu": ["channel_shared"], "input": ["dim"],
}


def _edit_line(draw: st.DrawFn, lines: list[str]) -> None:
    """Delete, duplicate or swap whole lines."""
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["delete", "duplicate", "swap"]))
    if how == "delete" and len(lines) > 1:
        del lines[i]
    elif how == "duplicate":
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]


def _edit_token(draw: st.DrawFn, lines: list[str], value_only: bool) -> None:
    """Swap a value for another of its kind (mostly), or replace any token (syntax may break)."""
    i = draw(st.integers(0, len(lines) - 1))
    tokens = _TOKEN.findall(lines[i])
    if not tokens:
        return
    values = [k for k, t in enumerate(tokens) if t[0] in '"-0123456789' or t in ("nan", "inf")]
    if value_only and values:
        k = draw(st.sampled_from(values))
        tokens[k] = draw(st.sampled_from(_STRINGS if tokens[k].startswith('"') else _NUMBERS))
    else:
        k = draw(st.integers(0, len(tokens) - 1))
        tokens[k] = draw(st.sampled_from(_WORDS + _STRINGS + _NUMBERS + [""]))
    lines[i] = " ".join(tokens)


def _insert_field(draw: st.DrawFn, lines: list[str]) -> None:
    """Add ``field: value`` to a ``*_param {`` block (out-of-range settings, or fields of another message)."""
    params = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.search(r"(\w+)_param \{", line))]
    if params:
        i, message = draw(st.sampled_from(params))
        known = _FIELDS.get(message, [])
        name = draw(st.sampled_from(known)) if known and draw(st.integers(0, 4)) else draw(st.sampled_from(
            sorted({f for fields in _FIELDS.values() for f in fields})))
        field = f"{name}: {draw(st.sampled_from(_NUMBERS + ['true', 'false']))} "
        lines[i] = re.sub(r"_param \{", "_param { " + field, lines[i], count=1)


def _shuffle(draw: st.DrawFn, lines: list[str]) -> list[str]:
    """List the layers in another order (the loader must sort them)."""
    header, blocks = split_layers("\n".join(lines) + "\n")
    return join_layers(header, draw(st.permutations(blocks))).splitlines() if len(blocks) > 1 else lines


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid (or nearly valid) net with 1-4 edits of values, fields, tokens, lines or layer order."""
    base = draw(st.one_of(st.sampled_from([STOCK_CAFFE, AUTOMTL]), small_net(), st.sampled_from(SHIPPED)))
    lines = base.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["value", "value", "value", "field", "field", "line", "token", "shuffle"]))
        if kind == "line":
            _edit_line(draw, lines)
        elif kind == "field":
            _insert_field(draw, lines)
        elif kind == "shuffle":
            lines = _shuffle(draw, lines)
        else:
            _edit_token(draw, lines, value_only=kind == "value")
    return "\n".join(lines) + "\n"


# ---- the property -------------------------------------------------------------------------

def load_build_run(text: str) -> Graph | None:
    """Load, build (under a small size limit) and run on zeros of the declared input shape.

    Returns the graph, or None when a typed error (an ``AutoMTLError``) refused the text; any
    other exception escapes and fails the test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            graph = loads_prototxt(text, "mutant.prototxt")
            net = graph.to_module(max_bytes=MAX_BYTES).eval()
            with torch.no_grad():
                out = net(*(torch.zeros(graph[name].shape or ()) for name in graph.inputs))
        except AutoMTLError as exc:
            assert not isinstance(exc, GraphError) or exc.path == "mutant.prototxt", exc
            return None
    outs = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape) for o in outs] == [graph[name].shape for name in graph.outputs]  # inferred = real
    return graph


def _fuzz_settings(test: Callable[[str], None]) -> Callable[[str], None]:
    """Bounded settings (about 10 s here); ``AUTOMTL_FUZZ_EXAMPLES`` / ``AUTOMTL_FUZZ_SEED`` for long runs."""
    bounded = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), derandomize=SEED is None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                       database=None)(test)
    return seed(int(SEED))(bounded) if SEED is not None else bounded


def _without_momentum(graph: Graph) -> tuple[Graph, list[float]]:
    """A copy of ``graph`` without BatchNorm momenta, and the momenta (compared apart, with a tolerance)."""
    copy = graph.copy()
    return copy, [n.attrs.pop("momentum") for n in copy if n.op == "batch_norm"]


def assert_round_trips(graph: Graph, dialect: str) -> None:
    """Export and reload give the same graph, or the export refuses with a typed ExportError.

    Refusals seen: track_running_stats: false or a Scale after a plain BatchNorm (stock Caffe), an
    InnerProduct with ``axis: -1`` on a 4-D bottom (either dialect). Stock Caffe stores
    ``1 - momentum`` as a float32: momenta come back within its precision.
    """
    try:
        text = dumps_prototxt(graph, dialect=dialect)
    except ExportError:
        return
    again, momenta = _without_momentum(loads_prototxt(text, "again.prototxt"))
    first, expected = _without_momentum(graph)
    assert again == first
    tolerance = 0.0 if dialect == "automtl" else 2e-7
    assert all(abs(a - b) <= tolerance for a, b in zip(momenta, expected)), (momenta, expected)


@_fuzz_settings
@given(mutated())
def test_mutated_prototxt_only_raises_typed_errors(text: str) -> None:
    """A mutated file loads, builds, runs and round-trips through both dialects, or raises an AutoMTLError."""
    graph = load_build_run(text)
    if graph is None:
        return
    assert graph.param_count() >= 0
    for dialect in ("automtl", "caffe"):
        assert_round_trips(graph, dialect)
