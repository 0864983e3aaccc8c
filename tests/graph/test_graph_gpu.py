"""Imported graphs run on a GPU like the original models (skipped without CUDA)."""
from __future__ import annotations

import pytest
import torch
import torchvision
from graph_fixtures import PROTOTXT

from automtl.backbones import zoo_backbone as backbone
from automtl.graph import copy_weights, from_module, load_prototxt

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_small", "efficientnet_b0"])
def test_fx_import_on_cuda(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval().cuda()
    x = torch.randn(4, 3, 128, 128, device="cuda")
    graph = from_module(model, x)
    net = graph.to_module().cuda().load_from(model).eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-4)


def test_shipped_prototxt_on_cuda() -> None:
    graph = load_prototxt(PROTOTXT / "deeplab_resnet34.prototxt")
    reference = backbone("deeplab_resnet34").eval().cuda()
    net = graph.to_module().cuda()
    copy_weights(reference, net, by="name")
    net.eval()
    x = torch.randn(2, 3, 96, 96, device="cuda")
    with torch.no_grad():
        out = net(x)
        torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-4)
    assert out.shape == (2, 512, 12, 12)
