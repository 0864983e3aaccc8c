"""Heads: registry/config construction, shapes, resizing, errors, and that they can learn."""
from __future__ import annotations

import pytest
import torch

from automtl.errors import ConfigError
from automtl.heads import HEADS, ASPPHead, ASPPv3Head, ConvHead, build_head, build_task_heads, task_out_channels


@pytest.mark.parametrize("name", ["ASPPHead", "ASPPv3Head", "ConvHead"])
def test_build_by_name_and_shapes(name):
    head = build_head(dict(type=name, in_channels=16, num_classes=7, mid_channels=8))
    assert name in HEADS.module_dict
    head.eval()
    x = torch.randn(2, 16, 6, 5)
    assert head(x).shape == (2, 7, 6, 5)
    assert head(x, out_size=(12, 10)).shape == (2, 7, 12, 10)
    fixed = build_head(dict(type=name, in_channels=16, num_classes=7, mid_channels=8, out_size=9))
    assert fixed.eval()(x).shape == (2, 7, 9, 9)


def test_aspp_v2_sums_branches_with_their_dilations():
    head = ASPPHead(4, 3, dilations=(1, 2), mid_channels=5, dropout=0.0).eval()
    assert [b[0].dilation for b in head.branches] == [(1, 1), (2, 2)]
    x = torch.randn(1, 4, 7, 7)
    assert torch.allclose(head(x), head.branches[0](x) + head.branches[1](x))
    assert isinstance(ASPPv3Head(4, 3).pool[0], torch.nn.AdaptiveAvgPool2d)


def test_errors():
    with pytest.raises(ConfigError, match="NoSuchHead"):
        build_head(dict(type="NoSuchHead", in_channels=1, num_classes=1))
    with pytest.raises(ConfigError, match="bogus"):
        build_head(dict(type="ConvHead", in_channels=1, num_classes=1, bogus=3))
    with pytest.raises(ConfigError, match=r"\[B,16,H,W\]"):
        ConvHead(16, 2)(torch.zeros(1, 8, 4, 4))


def test_task_out_channels_and_task_heads():
    assert task_out_channels("normal") == 3
    assert task_out_channels("depth_zbuffer") == 1
    assert task_out_channels("segment_semantic") == 5
    assert task_out_channels("segment_semantic", num_classes=19) == 19
    with pytest.raises(ConfigError, match="human_parts"):
        task_out_channels("human_parts")
    heads = build_task_heads(["segment_semantic", "normal"], 8, num_classes=13)
    assert heads["segment_semantic"].num_classes == 13 and heads["normal"].num_classes == 3


def test_conv_head_learns_a_mapping():
    torch.manual_seed(0)
    head = ConvHead(3, 1, mid_channels=8)
    x = torch.randn(8, 3, 8, 8)
    y = x[:, :1] * 2 - x[:, 1:2]
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = (head(x) - y).pow(2).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
