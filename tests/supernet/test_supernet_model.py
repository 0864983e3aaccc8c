"""MTLModel: equivalence with the source network, stages, gradients, skip, typed errors."""
from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from supernet_helpers import DenseHead, heads, one_conv, perturb, tiny_resnet
from torch import nn

from automtl.errors import ConfigError, HeadMismatchError, ModelError, PolicyError, UnknownTaskError
from automtl.supernet import MTLModel, Policy


def test_resnet18_one_task_all_share_reproduces_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    perturb(net, seed=1)
    net.eval()
    model = MTLModel(net, {"cls": nn.Identity()}).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = net(x)
        out = model(x, task="cls", stage="fixed", policy=Policy.all(model, "share"))
        common = model(x, stage="common")
    assert out.shape == (2, 1000)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(common, ref, rtol=1e-5, atol=1e-5)
    assert len(model.policy_layers) == 21  # 20 convs + fc
    total = model.count_params(Policy.all(model, "share"))["total"]
    assert total == sum(p.numel() for p in net.parameters())


def test_fixed_policy_choices_run_their_branch() -> None:
    torch.manual_seed(0)
    m = MTLModel(one_conv(), heads(4, ("a", "b")))
    perturb(m)
    m.eval()
    unit = m.unit("l.conv")
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        for choice, expect in [("share", unit.share_norm["b"](unit.common(x))),
                               ("specialize", unit.spec_norm["b"](unit.specific["b"](x))),
                               ("skip", x)]:
            pol = Policy.all(m).replace({("l.conv", "b"): choice})
            torch.testing.assert_close(m(x, task="b", stage="fixed", policy=pol), m.heads["b"](expect))


def test_pre_stage_averages_the_branches() -> None:
    torch.manual_seed(0)
    m = MTLModel(one_conv(), heads(4, ("a", "b")))
    perturb(m)
    m.eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        branches = [m(x, task="a", stage="fixed", policy=Policy.all(m).replace({("l.conv", "a"): c}))
                    for c in ("share", "specialize", "skip")]
        # the head is affine, so averaging before or after it is the same
        torch.testing.assert_close(m(x, task="a", stage="pre"), sum(branches) / 3)


def test_mtl_with_peaked_logits_equals_the_fixed_policy() -> None:
    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(), heads(16))
    perturb(m)
    m.eval()
    policy = Policy.random(m, seed=4)
    with torch.no_grad():
        m.logits.copy_(policy.index_tensor(m).unsqueeze(-1).eq(torch.arange(3)).float() * 50.0)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        fixed = m.forward_all(x, policy)
        for t in m.tasks:
            torch.testing.assert_close(m(x, task=t, stage="mtl", tau=0.1), fixed[t])
            torch.testing.assert_close(m(x, task=t, stage="mtl", tau=1.0, hard=True), fixed[t])
    assert m.argmax_policy() == policy


def test_gradients_reach_logits_only_in_mtl_stage() -> None:
    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(), heads(16))
    x = torch.randn(2, 3, 16, 16)
    for hard in (False, True):
        m.zero_grad(set_to_none=True)
        m(x, task="depth", stage="mtl", tau=5.0, hard=hard).square().mean().backward()
        g = m.logits.grad
        assert g is not None and g[:, 1].abs().sum(-1).gt(0).all(), "every layer of the task gets a gradient"
        assert g[:, [0, 2]].abs().sum() == 0, "other tasks' logits get none"
        assert m.unit("b2.c1.conv").specific["depth"].weight.grad is not None
    m.zero_grad(set_to_none=True)
    m(x, task="depth", stage="fixed", policy=Policy.random(m, seed=0)).square().mean().backward()
    assert m.logits.grad is None
    m.zero_grad(set_to_none=True)
    m(x, task="depth", stage="pre").square().mean().backward()
    assert m.logits.grad is None
    names = {id(p) for p in m.policy_parameters()}
    assert names == {id(m.logits)}
    assert len(list(m.weight_parameters())) == len(list(m.parameters())) - 1


def test_skip_projection_on_stride_and_channel_change() -> None:
    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(c=8, size=16), heads(16, ("a",)))
    stride_unit = m.unit("b2.c1.conv")  # 8 -> 16 channels, stride 2
    assert isinstance(stride_unit.proj, nn.Conv2d)
    assert stride_unit.proj.kernel_size == (1, 1) and stride_unit.proj.stride == (2, 2)
    assert (stride_unit.proj.in_channels, stride_unit.proj.out_channels) == (8, 16)
    assert stride_unit.proj_norm is not None
    assert m.unit("stem.conv").proj.stride == (1, 1)  # 3 -> 8 channels, same size
    assert m.unit("b1.c1.conv").proj is None and m.unit("b2.c2.conv").proj is None  # identity skips
    policy = Policy.all(m).replace({("b2.c1.conv", "a"): "skip", ("stem.conv", "a"): "skip",
                                    ("b1.c1.conv", "a"): "skip"})
    x = torch.randn(2, 3, 16, 16)
    out = m(x, task="a", stage="fixed", policy=policy)
    assert out.shape == (2, 1, 8, 8)
    out.sum().backward()
    assert stride_unit.proj.weight.grad is not None and stride_unit.common.weight.grad is None
    assert m.unit("b2.c2.conv").common.weight.grad is not None


def test_head_mismatch_names_both_numbers() -> None:
    with pytest.raises(HeadMismatchError, match=r"'depth' expects 32 input channels .* 16 channels"):
        MTLModel(tiny_resnet(), {"seg": DenseHead(16, 2), "depth": DenseHead(32, 1)})
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    MTLModel(tiny_resnet(), {"cls": head})  # pooled linear heads read the channels
    with pytest.raises(HeadMismatchError, match="expects 10 input features"):
        MTLModel(tiny_resnet(), {"cls": nn.Sequential(nn.Flatten(), nn.Linear(10, 3))})


def test_unknown_task_stage_and_missing_policy() -> None:
    m = MTLModel(tiny_resnet(), heads(16))
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(UnknownTaskError, match=r"'nope'.*\['seg', 'depth', 'normal'\]"):
        m(x, task="nope")
    with pytest.raises(UnknownTaskError):
        m(x, stage="mtl")
    with pytest.raises(UnknownTaskError):
        m.forward_all(x, Policy.all(m), tasks=["seg", "nope"])
    with pytest.raises(ModelError, match="unknown stage"):
        m(x, task="seg", stage="warmup")
    with pytest.raises(PolicyError, match="no policy"):
        m(x, task="seg", stage="fixed")
    m.set_policy(Policy.all(m, "specialize"))
    assert m(x, task="seg", stage="fixed").shape == (1, 1, 8, 8)
    with pytest.raises(ModelError, match="task name"):
        MTLModel(tiny_resnet(), {"a.b": DenseHead(16, 1)})


def test_nan_logits_are_a_typed_error() -> None:
    m = MTLModel(tiny_resnet(), heads(16))
    with torch.no_grad():
        m.logits[2, 1, 0] = float("nan")
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(PolicyError, match=r"NaN.*b1.c2.conv/depth"):
        m(x, task="seg", stage="mtl")
    with pytest.raises(PolicyError, match="NaN"):
        m.sample_policy(seed=0)
    with pytest.raises(PolicyError, match="NaN"):
        m.policy_regularizer()
    m(x, task="seg", stage="fixed", policy=Policy.all(m))  # fixed policies do not read the logits


def test_policy_regularizer_matches_the_formula() -> None:
    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(), heads(16, ("a", "b")))
    with torch.no_grad():
        m.logits.normal_()
    g = m.logits.detach()
    depth = g.shape[0]
    nodes = {n.name: n for n in m.graph}

    @functools.cache
    def longest(name: str) -> int:  # longest path from an input, inputs at 0 (AutoMTL's node.depth)
        return max((1 + longest(src) for src in nodes[name].inputs), default=0)

    top = max(longest(n) for n in nodes)
    units = [u.name for u in m.spec.units]
    assert longest(units[0]) == 1 and top > depth  # the stem conv reads the input; relus/adds count too

    def formula(s, w, coef):
        return sum(coef[d] * (w[0] * F.softplus(s * (g[d, t, 1] - g[d, t, 0])) +
                              w[1] * F.softplus(s * (g[d, t, 2] - g[d, t, 0])))
                   for d in range(depth) for t in range(2))

    s, w = 2.0, (1.0, 0.5)
    graph_coef = [(top - longest(u)) / top for u in units]
    reg = m.policy_regularizer(sharpness=s, weights=w)
    torch.testing.assert_close(reg, torch.as_tensor(formula(s, w, graph_coef), dtype=reg.dtype))
    # AutoMTL's sharpness 6 by default; the index rule of earlier versions on request
    torch.testing.assert_close(m.policy_regularizer(), formula(6.0, (1.0, 1.0), graph_coef).to(reg.dtype))
    index_coef = [(depth - d) / depth for d in range(depth)]
    torch.testing.assert_close(m.policy_regularizer(sharpness=s, weights=w, depth="index"),
                               formula(s, w, index_coef).to(reg.dtype))
    with pytest.raises(ConfigError, match="depth"):
        m.policy_regularizer(depth="layers")
    flat = m.policy_regularizer(depth_weighted=False)
    assert flat.item() > m.policy_regularizer().item()
    reg.backward()
    assert (m.logits.grad[..., 0] < 0).all(), "descending the regulariser raises the share logits"
    low, high = m.logits.grad[0, :, 0].abs().sum(), m.logits.grad[-1, :, 0].abs().sum()
    assert low > high, "lower layers are pushed harder towards share"
    assert m.policy_regularizer(sharpness=s, weights=w, tasks=["a"]).item() < reg.item()


def test_count_params_analytic_cases() -> None:
    m = MTLModel(tiny_resnet(), heads(16))
    backbone = sum(p.numel() for n, p in m.units.named_parameters() if ".common." in n or ".share_norm.seg." in n)
    head_sum = sum(p.numel() for p in m.heads.parameters())
    bn = sum(p.numel() for n, p in m.units.named_parameters() if ".share_norm.seg." in n)
    share = m.count_params(Policy.all(m, "share"))
    assert share["total"] == backbone + 2 * bn + head_sum  # per-task BN
    assert share["seg"] == backbone + sum(p.numel() for p in m.heads["seg"].parameters())
    spec = m.count_params(Policy.all(m, "specialize"))
    assert spec["total"] == 3 * backbone + head_sum
    shared_bn = MTLModel(tiny_resnet(), heads(16), bn_per_task=False)
    assert shared_bn.count_params(Policy.all(shared_bn))["total"] == backbone + head_sum
    assert math.isclose(spec["total"] / share["total"], 3, rel_tol=0.2)


def test_prototxt_path_and_graph_input_shape(tmp_path) -> None:
    g = tiny_resnet(size=16)
    m = MTLModel(g, heads(16), input_shape=(1, 3, 32, 32))
    assert m.graph[m.spec.outputs[0]].shape == (1, 16, 16, 16)
    assert g[g.outputs[0]].shape == (1, 16, 8, 8), "the caller's graph is not modified"
    with pytest.raises(ModelError, match="backbone must be"):
        MTLModel(42, heads(16))


@pytest.mark.parametrize("name, expected", [("deeplab_resnet34", 21_284_672), ("mobilenetv2", 2_223_872),
                                            ("mnasnet", 3_102_312)])
def test_shipped_prototxt_backbones_have_automtl_param_counts(name: str, expected: int) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "prototxt" / f"{name}.prototxt"
    if not path.exists():
        pytest.skip(f"{path} not shipped")
    m = MTLModel(str(path), {"a": nn.Identity(), "b": nn.Identity()})
    counts = m.count_params(Policy.all(m))
    assert counts["a"] == counts["b"] == expected  # conv + BN weights of the backbone (DESIGN §3)
    assert counts["total"] > expected  # + the second task's BatchNorm


def test_training_gradients_of_forward_all_and_compiled_agree() -> None:
    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(), heads(16))
    perturb(m)
    policy = Policy.random(m, seed=5)
    branched = m.compile(policy)
    m.train(), branched.train()
    x = torch.randn(4, 3, 16, 16)
    ref = m.forward_all(x, policy)
    out = branched(x)
    sum(o.square().mean() for o in ref.values()).backward()
    sum(o.square().mean() for o in out.values()).backward()
    for t in m.tasks:
        torch.testing.assert_close(out[t], ref[t])
    assert any(type(mod) is nn.ReLU and mod.inplace for mod in branched.modules())
    name = "stem__conv__common"
    if policy.choice("stem.conv", "seg") == "share":
        torch.testing.assert_close(branched.layers[name].weight.grad, m.unit("stem.conv").common.weight.grad)
    for t in m.tasks:
        torch.testing.assert_close(branched.heads[t].conv.weight.grad, m.heads[t].conv.weight.grad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_stages_and_compile() -> None:
    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(), heads(16)).cuda()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    m(x, task="seg", stage="mtl", hard=True).mean().backward()
    assert m.logits.grad is not None and m.logits.grad.is_cuda
    m.eval()
    policy = m.sample_policy(seed=0)
    with torch.no_grad():
        ref = m.forward_all(x, policy)
        out = m.compile(policy)(x)
    for t in m.tasks:
        torch.testing.assert_close(out[t], ref[t])


def test_deepcopy_and_state_dict_round_trip() -> None:
    import copy

    torch.manual_seed(0)
    m = MTLModel(tiny_resnet(), heads(16))
    perturb(m)
    m.eval()
    x = torch.randn(2, 3, 16, 16)
    policy = Policy.random(m, seed=2)
    with torch.no_grad():
        ref = m.forward_all(x, policy)  # fills the program cache
        twin = copy.deepcopy(m)
        torch.testing.assert_close(twin.forward_all(x, policy)["seg"], ref["seg"])
        for p in twin.weight_parameters():
            p.add_(1.0)
        assert not torch.allclose(twin.forward_all(x, policy)["seg"], ref["seg"])
        torch.testing.assert_close(m.forward_all(x, policy)["seg"], ref["seg"])  # the copy is independent
        fresh = MTLModel(tiny_resnet(), heads(16))
        fresh.load_state_dict(m.state_dict())
        fresh.eval()
        for t in m.tasks:
            torch.testing.assert_close(fresh.forward_all(x, policy)[t], ref[t])
    assert "logits" in m.state_dict()
