"""Prototxt texts the graph tests write to disk (generated here, nothing is downloaded)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOTXT = ROOT / "prototxt"

# Stock BVLC Caffe: Input layer, BatchNorm + Scale, in-place ReLU, _h/_w and repeated fields,
# default (ceil) pooling, global pooling, implicit flatten before InnerProduct, Split.
STOCK_CAFFE = '''name: "stock"
layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 17 dim: 17 } }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  convolution_param {
    num_output: 8
    bias_term: false
    pad_h: 1
    pad_w: 2
    kernel_h: 3
    kernel_w: 5
    stride: 2
    weight_filler { type: "msra" }
  }
}
layer {
  name: "conv1/bn"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  batch_norm_param { use_global_stats: true eps: 0.001 }
}
layer {
  name: "conv1/scale"
  type: "Scale"
  bottom: "conv1"
  top: "conv1"
  scale_param { bias_term: true }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 }
}
layer { name: "split" type: "Split" bottom: "pool1" top: "a" top: "b" }
layer {
  name: "conv2"
  type: "Convolution"
  bottom: "a"
  top: "conv2"
  convolution_param { num_output: 8 pad: [1, 1] kernel_size: [3, 3] group: 4 dilation: 1 }
}
layer { name: "leaky" type: "ReLU" bottom: "conv2" top: "conv2" relu_param { negative_slope: 0.1 } }
layer {
  name: "sum"
  type: "Eltwise"
  bottom: "conv2"
  bottom: "b"
  top: "sum"
  eltwise_param { operation: SUM coeff: 0.5 coeff: 2 }
}
layer { name: "prod" type: "Eltwise" bottom: "sum" bottom: "b" top: "prod" eltwise_param { operation: PROD } }
layer { name: "emax" type: "Eltwise" bottom: "prod" bottom: "sum" top: "emax" eltwise_param { operation: MAX } }
layer { name: "cat" type: "Concat" bottom: "emax" bottom: "b" top: "cat" }
layer { name: "prelu" type: "PReLU" bottom: "cat" top: "cat" }
layer { name: "sig" type: "Sigmoid" bottom: "cat" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "sig" top: "tanh" }
layer { name: "relu6" type: "ReLU6" bottom: "tanh" top: "relu6" }
layer {
  name: "up"
  type: "Deconvolution"
  bottom: "relu6"
  top: "up"
  convolution_param { num_output: 4 kernel_size: 2 stride: 2 bias_term: true }
}
layer {
  name: "avg"
  type: "Pooling"
  bottom: "up"
  top: "avg"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 }
}
layer {
  name: "gap"
  type: "Pooling"
  bottom: "avg"
  top: "gap"
  pooling_param { pool: AVE global_pooling: true }
}
layer {
  name: "fc"
  type: "InnerProduct"
  bottom: "avg"
  top: "fc"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } }
}
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.3 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "flat" type: "Flatten" bottom: "gap" top: "flat" }
'''

# The AutoMTL dialect with the quirks of real AutoMTL files: the declared input is not the
# blob the first layer reads, batch 10, relu_param { inplace }, engine: CAFFE, empty fillers.
AUTOMTL = '''name: "quirky"
input: "blob1"
input_dim: 10
input_dim: 3
input_dim: 16
input_dim: 16
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv_blob1"
  convolution_param {
    num_output: 4
    bias_term: false
    pad: 1
    kernel_size: 3
    group: 1
    stride: 1
    weight_filler {
    }
    engine: CAFFE
    dilation: 1
  }
}
layer {
  name: "batch_norm1"
  type: "BatchNorm"
  bottom: "conv_blob1"
  top: "batch_norm_blob1"
  batch_norm_param {
    track_running_stats: true
    eps: 1e-05
    momentum: 0.1
  }
}
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "batch_norm_blob1"
  top: "relu_blob1"
  relu_param {
    inplace: true
  }
}
layer {
  name: "max_pool1"
  type: "Pooling"
  bottom: "relu_blob1"
  top: "max_pool_blob1"
  pooling_param {
    pool: MAX
    kernel_size: 3
    stride: 2
    pad: 1
    round_mode: FLOOR
  }
}
layer {
  name: "add1"
  type: "Eltwise"
  bottom: "max_pool_blob1"
  bottom: "max_pool_blob1"
  top: "add_blob1"
  eltwise_param {
    operation: SUM
  }
}
'''


def split_layers(text: str) -> tuple[list[str], list[list[str]]]:
    """A prototxt's header lines and its top-level ``layer`` blocks (lines each), to reorder them."""
    from automtl.graph.prototxt import top_level_entries

    lines = text.splitlines()
    starts = sorted(set(top_level_entries(text).get("layer", [])))
    if not starts:
        return lines, []
    bounds = [s - 1 for s in starts] + [len(lines)]
    return lines[:bounds[0]], [lines[a:b] for a, b in zip(bounds, bounds[1:])]


def join_layers(header: list[str], blocks: list[list[str]]) -> str:
    """The text of :func:`split_layers` parts, put back together."""
    return "\n".join(header + [line for block in blocks for line in block]) + "\n"


def relu_chain(n: int, reverse: bool = False) -> str:
    """``n`` ReLU layers in a chain (``t0`` → ``t1`` → …), listed in order or reversed."""
    head = 'name: "chain"\ninput: "data"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 2\ninput_dim: 2\n'
    layers = [f'layer {{ name: "l{i}" type: "ReLU" bottom: "{f"t{i - 1}" if i else "data"}" top: "t{i}" }}\n'
              for i in range(n)]
    return head + "".join(reversed(layers) if reverse else layers)
