"""from_module: torch.fx import of torchvision backbones and small hand-written modules."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from automtl.errors import GraphError, TraceError
from automtl.graph import Graph, copy_weights, from_module

MODELS = ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mnasnet1_0",
          "efficientnet_b0", "regnet_y_400mf"]


def _randomize_norms(model: nn.Module) -> None:
    """Give BN non-trivial statistics so a forgotten buffer copy shows up in the outputs."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _features(name: str, model: nn.Module) -> nn.Module:
    if hasattr(model, "features"):
        return model.features
    if name.startswith("resnet"):
        return nn.Sequential(*list(model.children())[:-2])
    return nn.Sequential(model.stem, model.trunk_output) if name.startswith("regnet") else model.layers


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_equivalence(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    _randomize_norms(model)
    x = torch.randn(2, 3, 64, 64)
    for part in (model, _features(name, model)):
        modes = [m.training for m in part.modules()]
        graph = from_module(part, x)
        assert [m.training for m in part.modules()] == modes  # import leaves the modes alone
        net = graph.to_module().load_from(part).eval()
        with torch.no_grad():
            expected, got = part(x), net(x)
        assert graph.output_shape == tuple(expected.shape)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert graph.param_count() == sum(p.numel() for p in part.parameters())
        assert sum(p.numel() for p in net.parameters()) == graph.param_count()


def test_resnet18_nodes_readable_and_ordered() -> None:
    model = torchvision.models.resnet18(weights=None)
    graph = from_module(model, torch.randn(1, 3, 224, 224))
    assert model.training
    convs = [n for n in graph if n.op == "conv"]
    bns = [n for n in graph if n.op == "batch_norm"]
    assert len(convs) == 20 and len(bns) == 20
    assert [n.name for n in convs][:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert graph["layer1.0.conv1"].source == "layer1.0.conv1"
    assert graph["layer1.0.conv1"].shape == (1, 64, 56, 56)
    assert graph["layer1.0.conv1"].attrs["kernel_size"] == (3, 3)
    assert graph["layer1.0.add"].op == "add" and graph["layer1.0.relu_1"].op == "relu"
    assert graph["fc"].op == "linear" and graph["flatten"].op == "flatten"
    assert graph.weighted_nodes() == convs + [graph["fc"]]
    # execution order: each conv's BN comes right after it
    order = [n.name for n in graph]
    assert order.index("layer2.0.bn1") == order.index("layer2.0.conv1") + 1


class _Mixed(nn.Module):
    """Functional ops, a parameter read directly, a module called with kwargs, a norm zoo."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.gn = nn.GroupNorm(2, 8)
        self.scale = nn.Parameter(torch.randn(1, 8, 1, 1))
        self.ln = nn.LayerNorm(256)
        self.act = nn.PReLU(8)
        self.pool = nn.MaxPool2d(2, return_indices=False)
        self.head = nn.Linear(8 * 256, 4)
        self.bn1d = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.gn(self.deconv(self.conv(x))))
        y = self.pool(y) * self.scale
        y = torch.cat([y, y + 1.0], dim=1)[:, :8]
        y = self.ln(y.flatten(2))
        y = self.bn1d(y.mean(-1)).unsqueeze(-1) + torch.nn.functional.relu(y)
        return self.drop(self.head(input=y.flatten(1)))


def test_mixed_module_ops_and_equivalence() -> None:
    torch.manual_seed(0)
    model = _Mixed().eval()
    x = torch.randn(2, 3, 16, 16)
    graph = from_module(model, x)
    ops = {n.name: n.op for n in graph}
    assert ops["conv"] == "conv" and ops["deconv"] == "deconv" and ops["gn"] == "group_norm"
    assert ops["ln"] == "layer_norm" and ops["act"] == "prelu" and ops["pool"] == "max_pool"
    assert ops["bn1d"] == "batch_norm" and graph["bn1d"].attrs["dims"] == 1
    assert ops["cat"] == "concat" and ops["scale"] == "module" and ops["mul"] == "mul"
    assert ops["head"] == "function"  # called with a keyword: kept as computation
    net = graph.to_module()
    assert copy_weights(model, net) > 0
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x))
    assert graph.param_count() == sum(p.numel() for p in model.parameters())


def test_multiple_outputs_and_inputs() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.a(x), self.a(y) * 2

    model = Two()
    x, y = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 5, 5)
    graph = from_module(model, (x, y))
    assert graph.inputs == ["x", "y"] and len(graph.outputs) == 2
    assert [n.name for n in graph if n.op == "conv"] == ["a", "a_1"]
    net = graph.to_module().load_from(model)
    for got, exp in zip(net(x, y), model(x, y)):
        torch.testing.assert_close(got, exp)


def test_untraceable_module_raises_trace_error() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(TraceError, match="Branchy"):
        from_module(Branchy(), torch.randn(1, 3))


def test_bad_example_input_raises_trace_error() -> None:
    with pytest.raises(TraceError):
        from_module(nn.Conv2d(3, 4, 1), torch.randn(1, 5, 4, 4))


def test_copy_weights_mismatch_is_typed() -> None:
    graph = from_module(nn.Sequential(nn.Conv2d(3, 4, 1)), torch.randn(1, 3, 4, 4))
    with pytest.raises(GraphError, match="do not fit"):
        copy_weights(nn.Sequential(nn.Conv2d(3, 5, 1)), graph.to_module())
    with pytest.raises(GraphError, match="not in"):
        copy_weights(nn.Sequential(), graph.to_module())


def test_graph_without_example_has_no_shapes() -> None:
    graph = from_module(torchvision.models.resnet18(weights=None))
    assert isinstance(graph, Graph) and graph["conv1"].shape is None


def test_built_modules_do_not_share_weights() -> None:
    model = _Mixed()
    graph = from_module(model, torch.randn(1, 3, 16, 16))
    a, b = graph.to_module(), graph.to_module()
    assert a.layer("head").target is not b.layer("head").target
    assert a.layer("scale") is not b.layer("scale")


def test_function_names_never_take_a_module_name() -> None:
    class Clash(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x + 1.0  # fx calls this node "add" too
            return self.add(y)

    graph = from_module(Clash(), torch.randn(2, 3))
    assert graph["add"].op == "relu" and graph["add"].source == "add"
    assert graph["add_1"].op == "function"
