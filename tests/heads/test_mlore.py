"""MLoRE decoder: the re-parameterised form equals the multi-path one, routing learns, the
balance loss has its known extremes, bad settings are typed errors."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from automtl.errors import ConfigError, ModelError, UnknownTaskError
from automtl.heads import HEADS, MLoReDecoder, build_head
from automtl.heads.mlore import MLoReBlock, balance_loss, top_k_weights
from automtl.heads.mlore_fused import forward_flops

torch.set_num_threads(1)

TASKS = {"seg": 5, "depth": 1}


def decoder(**kw) -> MLoReDecoder:
    torch.manual_seed(0)
    settings = dict(channels=16, ranks=(2, 4, 6, 8, 10, 12), top_k=3)
    settings.update(kw)
    return MLoReDecoder([8, 12], TASKS, **settings)


def feats(n: int = 6, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def level(c: int, s: int) -> torch.Tensor:  # per-image channel offsets: images unlike each other
        return torch.randn(n, c, s, s, generator=g) + 2 * torch.randn(n, c, 1, 1, generator=g)

    return [level(8, 12), level(12, 6)]


def trained_stats(dec: MLoReDecoder) -> MLoReDecoder:
    """Non-trivial BatchNorm statistics and affine terms, so folding has something to fold."""
    dec.train()
    with torch.no_grad():
        for i in range(3):
            for t in TASKS:
                dec(feats(seed=10 + i), t)
        for m in dec.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, torch.nn.Linear) and m.out_features == len(dec.ranks):
                m.weight.mul_(20)  # sharp routers: images pick different experts
    return dec.eval()


@pytest.mark.parametrize("mask", ["before", "after"])
def test_reparameterised_output_equals_multi_path_for_different_routings(mask):
    dec = trained_stats(decoder(mask=mask))
    x = feats()
    fused = dec.reparameterize()
    with torch.no_grad():
        for task in TASKS:
            expected = dec(x, task)
            p = dec.blocks()[0].routing[0]
            chosen = {tuple(row.nonzero().flatten().tolist()) for row in p}
            assert len(chosen) > 1, "every image routed alike: the test would not cover per-image kernels"
            assert ((p > 0).sum(1) == 3).all()
            got = fused(x, task)
            assert got.shape == expected.shape == (6, TASKS[task], 12, 12)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        together = fused.forward_all(x)
        torch.testing.assert_close(together["depth"], dec(x, "depth"), rtol=1e-4, atol=1e-5)


def test_fused_block_is_batched_not_a_loop_over_images(monkeypatch):
    block = trained_stats(decoder()).reparameterize().levels[0][0]
    calls = []
    real = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    per_batch = []
    with torch.no_grad():
        for n in (1, 7):
            calls.clear()
            out = block(torch.randn(n, 16, 5, 5), "seg")
            assert out.shape == (n, 16, 5, 5)
            assert calls[0] == (1, n * 16, 5, 5)  # every image's kernel in one grouped convolution
            per_batch.append(len(calls))
    assert per_batch[0] == per_batch[1]  # as many convolutions for 7 images as for 1


@pytest.mark.parametrize("mask", ["before", "after"])
def test_router_gradients_are_non_zero(mask):
    dec = decoder(mask=mask, balance_weight=1e-2).train()
    out = dec(feats(4), "seg")
    loss = out.square().mean() + sum(dec.auxiliary_losses().values())
    loss.backward()
    for block in dec.blocks():
        router = block.routers["seg"]
        for name in ("logits", "noise", "gate"):
            grad = getattr(router, name).weight.grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        assert block.routers["depth"].logits.weight.grad is None  # another task's router is untouched


def test_balance_loss_has_its_known_extremes():
    e = 6
    assert balance_loss(torch.full((4, e), 1 / e)).item() == pytest.approx(0.0, abs=1e-12)
    one_hot = torch.zeros(4, e)
    one_hot[:, 2] = 1
    assert balance_loss(one_hot).item() == pytest.approx(e - 1)
    rotating = torch.eye(e)  # every image a different single expert: uniform on average
    assert balance_loss(rotating).item() == pytest.approx(0.0, abs=1e-12)
    skewed = torch.softmax(torch.randn(8, e) * 3, -1)
    assert 0 < balance_loss(skewed).item() < e - 1


def test_decoder_balance_loss_is_zero_for_uniform_routing_and_weighted():
    dec = decoder(top_k=6, balance_weight=3e-4).train()
    for block in dec.blocks():
        for r in block.routers.values():
            torch.nn.init.zeros_(r.logits.weight)
            torch.nn.init.zeros_(r.logits.bias)
            r.noise = None
    dec.forward_all(feats(3))
    (loss,) = dec.auxiliary_losses().values()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    sharp = trained_stats(decoder(balance_weight=2.0)).train()
    sharp.forward_all(feats(3))
    routing = [torch.cat(b.routing) for b in sharp.blocks()]
    assert routing[0].shape[0] == 2 * 3  # both tasks' images
    expected = 2.0 * sum(balance_loss(p) for p in routing)
    torch.testing.assert_close(sharp.auxiliary_losses()["mlore_balance"], expected)
    off = decoder(balance_weight=0)
    assert off.auxiliary_losses() == {}
    off(feats(2), "seg")
    assert off.auxiliary_losses() == {}
    assert decoder().auxiliary_losses() == {}  # nothing before the first forward


def test_top_k_masks_before_and_after_softmax():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    before, after = top_k_weights(logits, 2, "before"), top_k_weights(logits, 2, "after")
    assert before[0, [1, 3]].tolist() == [0, 0] and after[0, [1, 3]].tolist() == [0, 0]
    assert before.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(after[0, [0, 2]], logits.softmax(-1)[0, [0, 2]])


def test_shared_conv_sees_a_stopped_gradient_only_with_the_flag():
    grads = {}
    for flag in (True, False):
        torch.manual_seed(0)  # same weights, input and router noise for both settings
        block = MLoReBlock(8, ["a"], (2, 4), 1, stop_grad_shared=flag)
        x = torch.randn(2, 8, 5, 5, requires_grad=True)
        block(x, "a").sum().backward()
        assert block.shared.weight.grad is not None and block.shared.weight.grad.abs().sum() > 0
        grads[flag] = x.grad
    assert not torch.allclose(grads[True], grads[False])


def test_params_and_flops_of_both_forms():
    dec = trained_stats(decoder())
    counts = dec.count_params()
    assert counts["total"] == sum(p.numel() for p in dec.parameters())
    own = {t: sum(p.numel() for p in dec.task_modules(t).parameters()) for t in TASKS}
    shared = counts["total"] - sum(own.values())
    assert shared > 0 and counts["seg"] == shared + own["seg"] and counts["depth"] == shared + own["depth"]
    fused = dec.reparameterize()
    block = dec.blocks()[0]
    c, e = 16, len(dec.ranks)
    assert fused.levels[0][0].bank.numel() == e * c * c * 9
    assert sum(p.requires_grad for p in fused.parameters()) == 0
    x = feats(4)
    multi, rep = forward_flops(lambda: dec(x, "seg")), forward_flops(lambda: fused(x, "seg"))
    assert 0 < rep < multi
    # one level-0 block: experts Σr·(9c + c) per pixel, task expert and shared conv 9c² each
    pix = 12 * 12 * 4
    path = 2 * pix * (sum(block.ranks) * 10 * c + 2 * 9 * c * c)
    assert forward_flops(lambda: block(torch.randn(4, c, 12, 12), "seg")) >= path


def test_deepcopy_after_a_training_forward():
    dec = decoder().train()
    dec(feats(2), "seg").sum().backward()
    clone = copy.deepcopy(dec)
    assert all(b.routing == [] for b in clone.blocks())
    assert dec.blocks()[0].routing


def test_bad_settings_and_inputs_are_typed_errors():
    with pytest.raises(ConfigError) as exc:
        decoder(channels=8, ranks=(4, 16))
    assert exc.value.key == "ranks.1" and "exceeds the decoder channels 8" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        decoder(ranks=(2, 4), top_k=3)
    assert exc.value.key == "top_k" and "2 experts" in str(exc.value)
    with pytest.raises(ConfigError, match="before"):
        decoder(mask="middle")
    with pytest.raises(ConfigError):
        decoder(top_k=0)
    with pytest.raises(ConfigError):
        MLoReDecoder([8], {})
    dec = decoder()
    with pytest.raises(ModelError, match="2 feature levels"):
        dec(feats()[:1], "seg")
    with pytest.raises(ModelError, match=r"level 1 must be \[B, 12, H, W\]"):
        dec([feats()[0], torch.randn(2, 7, 4, 4)], "seg")
    with pytest.raises(UnknownTaskError):
        dec(feats(), "normal")
    assert "MLoReDecoder" in HEADS.module_dict
    with pytest.raises(ConfigError) as exc:
        build_head(dict(type="MLoReDecoder", in_channels=[8], num_classes={"seg": 5}, channels=4, ranks=(8,)))
    assert exc.value.key == "head.ranks.0"
