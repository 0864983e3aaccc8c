"""compile(): the branched model equals forward_all, holds exactly count_params, runs each group once."""
from __future__ import annotations

import pytest
import torch
from supernet_helpers import heads, perturb, tiny_resnet
from torch import nn

from automtl.errors import UnknownTaskError
from automtl.supernet import MTLModel, Policy

CONVS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _conv_outputs_per_layer(model: MTLModel, x: torch.Tensor, policy: Policy) -> dict[str, list[torch.Tensor]]:
    """Oracle: run each task alone; record every weighted call's output under its policy layer."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for layer in model.policy_layers:
        unit = model.unit(layer)
        mods = [unit.common, *unit.specific.values()] + ([unit.proj] if unit.proj is not None else [])
        for mod in mods:
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, out, layer=layer: seen.setdefault(layer, []).append(out.detach().clone())))
    try:
        with torch.no_grad():
            for t in model.tasks:
                model(x, task=t, stage="fixed", policy=policy)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _distinct(tensors: list[torch.Tensor]) -> int:
    reps: list[torch.Tensor] = []
    for t in tensors:
        if not any(r.shape == t.shape and torch.equal(r, t) for r in reps):
            reps.append(t)
    return len(reps)


def _count_calls(module: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
    calls = [0]
    hooks = [m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
             for m in module.modules() if isinstance(m, CONVS) and not _in_head(module, m)]
    try:
        with torch.no_grad():
            out = module(x)
    finally:
        for h in hooks:
            h.remove()
    return out, calls[0]


def _in_head(root: nn.Module, m: nn.Module) -> bool:
    return any(m is h for head in root.heads.values() for h in head.modules())


@pytest.mark.parametrize("bn_per_task", [True, False])
def test_compile_random_policies(bn_per_task: bool) -> None:
    torch.manual_seed(0)
    model = MTLModel(tiny_resnet(), heads(16), bn_per_task=bn_per_task)
    perturb(model, seed=2)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    for seed in range(6):
        policy = Policy.random(model, seed=seed)
        branched = model.compile(policy).eval()
        out, calls = _count_calls(branched, x)
        with torch.no_grad():
            ref = model.forward_all(x, policy)
        assert set(out) == set(model.tasks)
        for t in model.tasks:
            torch.testing.assert_close(out[t], ref[t], rtol=0, atol=0)
        counts = model.count_params(policy)
        assert counts["total"] == sum(p.numel() for p in branched.parameters())
        for t in model.tasks:
            alone = model.compile(policy, tasks=[t])
            assert counts[t] == sum(p.numel() for p in alone.parameters()), (seed, t)
        expected = sum(_distinct(v) for v in _conv_outputs_per_layer(model, x, policy).values())
        assert calls == expected, (seed, calls, expected)


def test_all_share_without_per_task_bn_is_one_trunk() -> None:
    model = MTLModel(tiny_resnet(), heads(16), bn_per_task=False).eval()
    branched = model.compile(Policy.all(model))
    _, calls = _count_calls(branched, torch.randn(1, 3, 16, 16))
    assert calls == len(model.policy_layers)
    spec = model.compile(Policy.all(model, "specialize"))
    _, calls = _count_calls(spec, torch.randn(1, 3, 16, 16))
    assert calls == 3 * len(model.policy_layers)


def test_subset_of_tasks_runs_only_what_they_need() -> None:
    torch.manual_seed(0)
    model = MTLModel(tiny_resnet(), heads(16), bn_per_task=False)
    perturb(model)
    model.eval()
    policy = Policy.all(model).replace({(layer, "normal"): "specialize" for layer in model.policy_layers[2:]})
    branched = model.compile(policy).eval()
    x = torch.randn(2, 3, 16, 16)
    full, calls_all = _count_calls(branched, x)
    calls = [0]
    hooks = [m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
             for m in branched.layers.values() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        part = branched(x, tasks=["seg"])
    for h in hooks:
        h.remove()
    assert list(part) == ["seg"] and calls[0] == len(model.policy_layers) < calls_all
    torch.testing.assert_close(part["seg"], full["seg"])
    with pytest.raises(UnknownTaskError):
        branched(x, tasks=["nope"])
    # no parameter of the branched model is unused by some task
    used = set()
    for name, *_ in branched.steps:
        used.update(id(p) for p in branched.layers[name].parameters())
    used.update(id(p) for p in branched.heads.parameters())
    assert used == {id(p) for p in branched.parameters()}


def test_branched_model_trains_and_is_independent() -> None:
    model = MTLModel(tiny_resnet(), heads(16))
    branched = model.compile(Policy.random(model, seed=1))
    before = model.unit("stem.conv").common.weight.detach().clone()
    opt = torch.optim.SGD(branched.parameters(), lr=0.1)
    loss = sum(o.square().mean() for o in branched(torch.randn(2, 3, 16, 16)).values())
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in branched.parameters())
    torch.testing.assert_close(model.unit("stem.conv").common.weight, before)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_export_torch_export_and_torchscript(tmp_path) -> None:
    torch.manual_seed(0)
    model = MTLModel(tiny_resnet(), heads(16))
    perturb(model)
    model.eval()
    branched = model.compile(Policy.random(model, seed=3)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = branched(x)
    exported = torch.export.export(branched, (x,))
    out = exported.module()(x)
    for t in model.tasks:
        torch.testing.assert_close(out[t], ref[t])
    path = tmp_path / "branched.pt2"
    torch.export.save(exported, path)
    assert torch.export.load(path).module()(x)["seg"].shape == ref["seg"].shape

    traced = torch.jit.trace(branched, (x,), strict=False)
    traced.save(str(tmp_path / "branched.ts"))
    loaded = torch.jit.load(str(tmp_path / "branched.ts"))
    out = loaded(x)
    for t in model.tasks:
        torch.testing.assert_close(out[t], ref[t])


def test_branched_model_exports_to_onnx_and_runs_in_onnxruntime(tmp_path) -> None:
    """The compiled model's ONNX file computes every task's output as PyTorch does (atol 1e-4)."""
    from automtl.graph.onnx import export_onnx

    model = MTLModel(tiny_resnet(), heads(16)).eval()
    branched = model.compile(Policy.random(model, seed=3)).eval()
    report = export_onnx(branched, torch.randn(2, 3, 16, 16), tmp_path / "b.onnx")
    assert report.outputs == tuple(model.tasks)
    assert all(d <= 1e-4 for d in report.max_abs_diff.values())
    import onnx

    onnx.checker.check_model(str(report.path))


def test_onnx_check_catches_a_model_that_onnxruntime_computes_differently(tmp_path) -> None:
    from automtl.errors import ExportError
    from automtl.graph.onnx import export_onnx

    class Drifts(torch.nn.Module):  # returns a different value on every call: export ≠ reference
        calls = 0

        def forward(self, x):
            Drifts.calls += 1
            return x + Drifts.calls

    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(Drifts(), torch.zeros(1, 2), tmp_path / "d.onnx")


def _odd_graph():
    """Depthwise conv, a stride-2 deconv (upsampling) and linear layers that change width."""
    from supernet_helpers import GraphBuilder

    b = GraphBuilder((1, 4, 8, 8), name="odd")
    x = b.cbr("c", "data", 4, 8)
    x = b.op("dw", "conv", x, in_channels=8, out_channels=8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
             dilation=(1, 1), groups=8, bias=True)
    x = b.op("up", "deconv", x, in_channels=8, out_channels=6, kernel_size=(4, 4), stride=(2, 2),
             padding=(1, 1), dilation=(1, 1), groups=1, bias=False, output_padding=(0, 0))
    x = b.bn("up.bn", x, 6)
    x = b.op("pool", "global_pool", x, method="avg")
    x = b.op("flat", "flatten", x, start_dim=1, end_dim=-1)
    x = b.op("fc1", "linear", x, in_features=6, out_features=10, bias=True)
    x = b.op("fc2", "linear", b.op("act", "relu", x), in_features=10, out_features=10, bias=True)
    return b.finish(x)


def test_skip_on_deconv_depthwise_and_linear() -> None:
    torch.manual_seed(0)
    model = MTLModel(_odd_graph(), {"a": nn.Linear(10, 2), "b": nn.Linear(10, 3)})
    assert isinstance(model.unit("up").proj, nn.ConvTranspose2d) and model.unit("up").proj.stride == (2, 2)
    assert isinstance(model.unit("fc1").proj, nn.Linear) and model.unit("fc2").proj is None
    assert model.unit("dw").proj is None
    perturb(model)
    model.eval()
    x = torch.randn(3, 4, 8, 8)
    policy = Policy.all(model).replace(
        {(layer, "b"): "skip" for layer in model.policy_layers})
    for pol in (policy, Policy.random(model, seed=1), Policy.random(model, seed=2)):
        with torch.no_grad():
            ref = model.forward_all(x, pol)
            out = model.compile(pol).eval()(x)
        assert ref["a"].shape == (3, 2) and ref["b"].shape == (3, 3)
        for t in model.tasks:
            torch.testing.assert_close(out[t], ref[t])
        assert model.count_params(pol)["total"] == sum(p.numel() for p in model.compile(pol).parameters())
    model.train()
    model(x, task="b", stage="mtl", tau=1.0).sum().backward()
    assert model.logits.grad[:, 1].abs().sum(-1).gt(0).all()
