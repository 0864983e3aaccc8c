"""Export a subnet of the supernet as plain modules: per task, and as one multi-task model."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypedDict, cast

import torch
from torch import nn

from automtl.errors import UnknownTaskError

from . import _ops as O
from ._config import PATCH, SE_REDUCTION, STEM_CHANNELS
from ._moe import TaskRoutedMoE
from ._plain import MHSE, Block, Head, MultiTaskViTMVT, PosEmbed, RelPosBias, ViTMVTNet
from ._supernet import ElasticBlock, ViTMVTSupernet


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.detach())


def _conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a convolution built with one (torch types it as optional)."""
    assert conv.bias is not None
    return conv.bias


def _dw(weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    c = weight.shape[0]
    conv = nn.Conv2d(c, c, 3, padding=1, groups=c, device=weight.device, dtype=weight.dtype)
    _copy(conv.weight, weight)
    _copy(_conv_bias(conv), bias)
    return conv


def _ln(weight: torch.Tensor, bias: torch.Tensor) -> nn.LayerNorm:
    ln = nn.LayerNorm(weight.shape[0], eps=O.LN_EPS, device=weight.device, dtype=weight.dtype)
    _copy(ln.weight, weight)
    _copy(ln.bias, bias)
    return ln


class _SharedParts(TypedDict):
    """The modules of one exported block that all its tasks share (the linears may differ)."""

    lpu: nn.Conv2d
    norm1: nn.LayerNorm
    rel: RelPosBias
    se: MHSE
    norm2: nn.LayerNorm
    dw: nn.Conv2d | None


def _shared_parts(b: ElasticBlock) -> _SharedParts:
    e, h, hid, r = b.embed, b.heads, b.hidden, b.embed // SE_REDUCTION
    rel = RelPosBias(h, b.grid).to(b.rel_table.device)
    _copy(rel.table, b.rel_table[:, :h])
    se = MHSE(e).to(b.se1_w.device)
    _copy(se.fc1.weight, b.se1_w[:r, :e])
    _copy(se.fc1.bias, b.se1_b[:r])
    _copy(se.fc2.weight, b.se2_w[:e, :r])
    _copy(se.fc2.bias, b.se2_b[:e])
    return {"lpu": _dw(b.lpu_w[:e], b.lpu_b[:e]), "norm1": _ln(b.norm1_w[:e], b.norm1_b[:e]),
            "rel": rel, "se": se, "norm2": _ln(b.norm2_w[:e], b.norm2_b[:e]),
            "dw": _dw(b.dw_w[:hid], b.dw_b[:hid]) if b.kind == "locality" else None}


def export_subnet(supernet: ViTMVTSupernet, arch: Mapping[str, Any] | None = None,
                  sharing: Mapping[str, Any] | None = None, *,
                  task: str | None = None) -> MultiTaskViTMVT | ViTMVTNet:
    """Plain modules computing exactly what ``supernet`` computes with ``arch`` active.

    Returns a :class:`MultiTaskViTMVT` (every module a task shares is one object), or with
    ``task`` the plain :class:`ViTMVTNet` of that task alone. ``arch`` defaults to the active
    subnet; without sharing genes the supernet's learned decisions are exported. The
    supernet's own active arch is left unchanged.
    """
    if task is not None and task not in supernet.tasks:
        raise UnknownTaskError(f"unknown task {task!r}; the supernet has {list(supernet.tasks)}")
    previous = supernet.arch_input
    if arch is not None:
        supernet.set_arch(arch, sharing)
    try:
        return _build(supernet, task)
    finally:
        if arch is not None:
            supernet.set_arch(previous)


def _build(net: ViTMVTSupernet, only: str | None) -> MultiTaskViTMVT | ViTMVTNet:
    arch = net.arch
    e = arch.embed
    dev = net.patch_w.device
    stem = copy.deepcopy(net.stem)
    patch = nn.Conv2d(STEM_CHANNELS, e, PATCH, PATCH, device=dev, dtype=net.patch_w.dtype)
    _copy(patch.weight, net.patch_w[:e])
    _copy(_conv_bias(patch), net.patch_b[:e])
    pos = PosEmbed(e, net.space.cfg.grid).to(dev)
    _copy(pos.weight, net.pos[:, :e])
    norm = _ln(net.norm_w[:e], net.norm_b[:e])
    tasks = net.tasks if only is None else (only,)
    blocks: dict[str, list[Block]] = {t: [] for t in tasks}
    for i in range(arch.depth):
        b = net.block(i)
        parts = _shared_parts(b)
        # an MoE layer's experts are shared by the tasks; each task routes with its own gate
        moe = b.moe.export(tasks) if b.kind == "moe" and b.moe is not None else None
        shared_lin: dict[str, nn.Linear] = {}
        for t in tasks:
            lins: dict[str, nn.Linear | None] = {"fc1": None, "fc2": None}
            for name, lin in b.active_linears().items():
                if lin.decision(t):
                    if name not in shared_lin:
                        shared_lin[name] = lin.export(None)
                    lins[name] = shared_lin[name]
                else:
                    lins[name] = lin.export(t)
            blocks[t].append(Block(**parts, qkv=cast(nn.Linear, lins["qkv"]),
                                   proj=cast(nn.Linear, lins["proj"]), fc1=lins["fc1"], fc2=lins["fc2"],
                                   moe=TaskRoutedMoE(moe, t) if moe is not None else None,
                                   drop_path=b.drop_path))
    nets = {}
    for t in tasks:
        head = Head(net.space.head_kinds[t], e, net.space.num_outputs[t]).to(dev)
        _copy(head.weight, net.head_w[t][:, :e])
        _copy(head.bias, net.head_b[t])
        nets[t] = ViTMVTNet(stem=stem, patch=patch, pos=pos, blocks=blocks[t], norm=norm, head=head,
                            out_indices=net.out_indices)
    if only is not None:
        return nets[only].train(net.training)
    return MultiTaskViTMVT(nets).train(net.training)


