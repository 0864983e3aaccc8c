"""Task heads, registered by name in ``HEADS`` (configs say ``dict(type="ASPPHead", ...)``).

Example:
    >>> from automtl.heads import build_head, task_out_channels
    >>> head = build_head(dict(type="ConvHead", in_channels=64, num_classes=task_out_channels("normal")))
"""
from __future__ import annotations

from automtl.data.tasks import task_out_channels
from automtl.heads._heads import HEADS, ASPPHead, ASPPv3Head, ConvHead, DenseHead, build_head, build_task_heads
from automtl.heads.mlore import MLoReDecoder
from automtl.heads.mlore_fused import FusedMLoReDecoder

__all__ = ["HEADS", "DenseHead", "ASPPHead", "ASPPv3Head", "ConvHead", "FusedMLoReDecoder", "MLoReDecoder",
           "build_head", "build_task_heads", "task_out_channels"]
