"""Backbone import: prototxt and torch.fx into one graph IR, and export back to prototxt."""
from automtl.graph.export import dumps_prototxt, to_prototxt
from automtl.graph.fx_import import copy_weights, from_module
from automtl.graph.ir import NORM_OPS, PARAMETRIC_OPS, WEIGHTED_OPS, Graph, Node
from automtl.graph.layers import SUPPORTED_OPS, Ref, build_layer, node_param_count
from automtl.graph.module import GraphModule, module_key
from automtl.graph.prototxt import load_prototxt, loads_prototxt

__all__ = [
    "Graph", "Node", "GraphModule", "Ref", "build_layer", "node_param_count", "module_key",
    "WEIGHTED_OPS", "NORM_OPS", "PARAMETRIC_OPS", "SUPPORTED_OPS",
    "from_module", "copy_weights", "load_prototxt", "loads_prototxt", "to_prototxt", "dumps_prototxt",
]
