"""automtl: automated multi-task learning and multi-task neural architecture search.

Turn any backbone (a Caffe-style ``.prototxt`` or a PyTorch ``nn.Module``) into a
multi-task supernet that learns what to share between tasks.
"""
from automtl import errors
from automtl.graph import Graph, GraphModule, Node

__version__ = "0.1.0"

__all__ = ["errors", "Graph", "GraphModule", "Node", "__version__"]
