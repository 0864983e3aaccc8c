"""The inference form of the MLoRE decoder: each block re-parameterised into one 3×3 convolution
per task and image, with every BatchNorm folded.

Everything in a block before its GELU is linear in the input, so in eval mode
``BN'_t(BN_t(Σ_i p_i·E_i(o)) + m·T_t(o) + S(o))`` is one 3×3 convolution whose kernel depends on
the image's routing: ``K_n = a'⊙(a⊙Σ_i p_{n,i}W_i + m_n·W_T + W_S)``. The experts' kernels
``W_i = up_i ∘ down_i`` are stacked once (``bank``: ``[E, C·C·9]``); per batch one matrix
product gives every image's kernel and one grouped convolution (groups = images) applies them,
so there is no Python loop over images. Routers run as in the decoder (no noise in eval).

Example:
    >>> fused = decoder.eval().reparameterize()
    >>> torch.allclose(fused(feats, "seg"), decoder(feats, "seg"), atol=1e-4)
    True
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from automtl.errors import UnknownTaskError
from automtl.heads.mlore import MLoReBlock, MLoReDecoder, TaskRouter, as_size, check_features, run_levels

__all__ = ["FusedMLoReBlock", "FusedMLoReDecoder", "fold_bn", "forward_flops"]


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=False)


def fold_bn(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``bn(x) == a·x + b`` per channel in eval mode."""
    mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
    var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
    a = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    b = -a * mean
    if bn.bias is not None:
        b = b + bn.bias
    return a.detach(), b.detach()


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` in eval mode (frozen weights)."""
    a, b = fold_bn(bn)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, cast(Any, conv.kernel_size), cast(Any, conv.stride),
                    cast(Any, conv.padding), cast(Any, conv.dilation), conv.groups, bias=True)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(a)
    out.weight = _frozen(conv.weight.detach() * a.view(-1, 1, 1, 1))
    out.bias = _frozen(a * bias + b)
    return out


class FusedMLoReBlock(nn.Module):
    """One MLoRE block as a single routed 3×3 convolution per task and image."""

    def __init__(self, block: MLoReBlock) -> None:
        super().__init__()
        c = block.channels
        self.channels, self.tasks = c, list(block.tasks)
        with torch.no_grad():
            self.bank = _frozen(block.expert_weights().reshape(len(block.ranks), c * c * 9))
            shared_w, shared_b = block.shared.weight, block.shared.bias
            assert shared_b is not None
            self.routers = nn.ModuleDict({t: copy.deepcopy(block.routers[t]).eval() for t in self.tasks})
            self.out_proj = nn.ModuleDict({t: copy.deepcopy(block.out_proj[t]) for t in self.tasks})
            self.expert_scale = nn.ParameterDict()
            self.task_w = nn.ParameterDict()
            self.task_b = nn.ParameterDict()
            self.base_w = nn.ParameterDict()
            self.base_b = nn.ParameterDict()
            for t in self.tasks:
                a1, b1 = fold_bn(cast(nn.BatchNorm2d, block.expert_norm[t]))
                a2, b2 = fold_bn(cast(nn.BatchNorm2d, block.out_norm[t]))
                te = cast(nn.Conv2d, block.task_expert[t])
                assert te.bias is not None
                self.expert_scale[t] = _frozen((a1 * a2).view(c, 1))
                self.task_w[t] = _frozen((te.weight * a2.view(-1, 1, 1, 1)).reshape(1, c, c * 9))
                self.task_b[t] = _frozen((te.bias * a2).view(1, c))
                self.base_w[t] = _frozen((shared_w * a2.view(-1, 1, 1, 1)).reshape(1, c, c * 9))
                self.base_b[t] = _frozen((a2 * (b1 + shared_b) + b2).view(1, c))

    def kernels(self, x: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image's kernel ``[N, C, C·9]`` and bias ``[N, C]`` for ``task``."""
        p, m = cast(TaskRouter, self.routers[task])(x)
        n, c = x.shape[0], self.channels
        experts = (p @ self.bank).view(n, c, c * 9) * self.expert_scale[task]
        kernel = torch.addcmul(experts + self.base_w[task], m.view(n, 1, 1), self.task_w[task])
        bias = torch.addcmul(self.base_b[task], m, self.task_b[task])
        return kernel, bias

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        n, c, h, w = x.shape
        kernel, bias = self.kernels(x, task)
        y = F.conv2d(x.reshape(1, n * c, h, w), kernel.reshape(n * c, c, 3, 3), bias.reshape(n * c),
                     padding=1, groups=n)
        return self.out_proj[task](F.gelu(y.view(n, c, h, w)))


class FusedMLoReDecoder(nn.Module):
    """The eval-only form of an :class:`~automtl.heads.mlore.MLoReDecoder` (frozen copies of its
    weights; same outputs as the decoder in eval mode, up to float rounding)."""

    def __init__(self, decoder: MLoReDecoder) -> None:
        super().__init__()
        self.tasks, self.num_classes = list(decoder.tasks), dict(decoder.num_classes)
        self.in_channels, self.out_size = decoder.in_channels, decoder.out_size
        self.proj = nn.ModuleList(
            nn.Sequential(fold_conv_bn(cast(nn.Conv2d, p[0]), cast(nn.BatchNorm2d, p[1])), nn.GELU())
            for p in cast(Sequence[nn.Sequential], decoder.proj))
        self.levels = nn.ModuleList(
            nn.ModuleList(FusedMLoReBlock(cast(MLoReBlock, b)) for b in cast(nn.ModuleList, level))
            for level in decoder.levels)
        self.predict = nn.ModuleDict({
            t: nn.Sequential(fold_conv_bn(cast(nn.Conv2d, s[0]), cast(nn.BatchNorm2d, s[1])), nn.ReLU(),
                             copy.deepcopy(s[3]))
            for t, s in cast(Mapping[str, nn.Sequential], decoder.predict).items()})
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, feats: Sequence[torch.Tensor], task: str,
                out_size: int | Sequence[int] | None = None) -> torch.Tensor:
        """The prediction of ``task`` (as :meth:`MLoReDecoder.forward`)."""
        check_features(feats, self.in_channels)
        if task not in self.num_classes:
            raise UnknownTaskError(f"unknown task {task!r}; the decoder's tasks are {self.tasks}")
        return run_levels(feats, self.proj, self.levels, self.predict[task], task,
                          as_size(out_size) or self.out_size)

    def forward_all(self, feats: Sequence[torch.Tensor] | Mapping[str, Sequence[torch.Tensor]],
                    tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{task: prediction}`` (``feats``: one list of levels, or one per task)."""
        return {t: self(feats[t] if isinstance(feats, Mapping) else feats, t)
                for t in (tasks if tasks is not None else self.tasks)}


def forward_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of convolutions and matrix products in ``fn()`` (torch's
    ``FlopCounterMode``; element-wise work such as norms and activations is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())
