"""Exported, non-elastic ViT-MVT models: one plain network per task, and a multi-task model
whose task networks hold the very same module objects wherever a weight is shared.

A block's FFN is the locality FFN (fc1, dw, fc2), a plain MLP (fc1, fc2; ``dw`` None) or a
task's view of a shared mixture of experts (``moe``, :class:`~._moe.TaskRoutedMoE`)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.errors import ArchError, UnknownTaskError

from . import _ops as O
from ._checkpoint import CheckedLoad
from ._config import HEAD_DIM, SE_REDUCTION, STEM_CHANNELS
from ._moe import TaskRoutedMoE, accumulating, moe_layers, reset_auxiliary


class Stem(nn.Sequential):
    """7×7/2 conv, then two 3×3 convs, each with BatchNorm and ReLU (64 channels)."""

    def __init__(self) -> None:
        c = STEM_CHANNELS
        layers: list[nn.Module] = []
        for cin, k, s in ((3, 7, 2), (c, 3, 1), (c, 3, 1)):
            layers += [nn.Conv2d(cin, c, k, s, k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # channels-last: faster cuDNN / oneDNN convolutions and BatchNorm at 112²
        x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class PosEmbed(nn.Module):
    """Learnable absolute position embedding of shape (1, E, g, g)."""

    def __init__(self, embed: int, grid: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, embed, grid, grid))

    def forward(self, m: Tensor) -> Tensor:
        return O.add_pos_embed(m, self.weight)


class RelPosBias(nn.Module):
    """Relative position bias table ((2g-1)², heads)."""

    def __init__(self, heads: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2, heads))

    def forward(self, hw: tuple[int, int]) -> Tensor:
        return O.relative_bias(self.table, self.grid, hw)


class MHSE(nn.Module):
    """Squeeze-and-excitation over the attention output (reduction 8)."""

    def __init__(self, embed: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed, embed // SE_REDUCTION)
        self.fc2 = nn.Linear(embed // SE_REDUCTION, embed)

    def forward(self, x: Tensor) -> Tensor:
        return O.mhse(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)


def _dw(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels)


class Block(nn.Module):
    """LPU → attention (MHSA + relative bias + MHSE) → FFN, all with residuals; the FFN is the
    locality FFN (``fc1``, ``dw``, ``fc2``), a plain MLP (``dw=None``) or ``moe``.

    Built from given submodules so a multi-task model can hand the same module object to
    several task networks.
    """

    def __init__(self, *, lpu: nn.Conv2d, norm1: nn.LayerNorm, qkv: nn.Linear, rel: RelPosBias,
                 proj: nn.Linear, se: MHSE, norm2: nn.LayerNorm, fc1: nn.Linear | None = None,
                 dw: nn.Conv2d | None = None, fc2: nn.Linear | None = None,
                 moe: TaskRoutedMoE | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        if (moe is None) != (fc1 is not None and fc2 is not None):
            raise ArchError("a block needs either fc1 and fc2 (dense / locality FFN) or moe",
                            key="ffn")
        self.lpu, self.norm1, self.qkv, self.rel, self.proj, self.se = lpu, norm1, qkv, rel, proj, se
        self.norm2, self.fc1, self.dw, self.fc2, self.moe = norm2, fc1, dw, fc2, moe
        self.drop_path = drop_path

    @property
    def ffn_kind(self) -> str:
        """``"moe"``, ``"dense"`` or ``"locality"``."""
        return "moe" if self.moe is not None else "dense" if self.dw is None else "locality"

    @classmethod
    def new(cls, embed: int, heads: int, hidden: int, grid: int, drop_path: float = 0.0, *,
            ffn: str = "locality") -> Block:
        """A block with freshly initialised weights and a ``locality`` or ``dense`` FFN."""
        if ffn not in ("locality", "dense"):
            raise ArchError("Block.new builds a locality or dense FFN; MoE blocks come from "
                            "export_subnet", key="ffn", value=ffn)
        return cls(lpu=_dw(embed), norm1=nn.LayerNorm(embed, eps=O.LN_EPS),
                   qkv=nn.Linear(embed, 3 * HEAD_DIM * heads), rel=RelPosBias(heads, grid),
                   proj=nn.Linear(HEAD_DIM * heads, embed), se=MHSE(embed),
                   norm2=nn.LayerNorm(embed, eps=O.LN_EPS), fc1=nn.Linear(embed, hidden),
                   dw=_dw(hidden) if ffn == "locality" else None, fc2=nn.Linear(hidden, embed),
                   drop_path=drop_path)

    def identity(self) -> tuple[int, ...]:
        """Ids of the submodules: two blocks with equal identity compute the same function."""
        return tuple(id(m) for m in self.children())

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        e = x.shape[-1]
        x = x + O.dwconv(x, hw, self.lpu.weight, self.lpu.bias)
        y = F.layer_norm(x, (e,), self.norm1.weight, self.norm1.bias, O.LN_EPS)
        y = O.attention(y, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias,
                        self.rel(hw))
        x = x + O.drop_path(self.se(y), self.drop_path, self.training)
        y = F.layer_norm(x, (e,), self.norm2.weight, self.norm2.bias, O.LN_EPS)
        if self.moe is not None:
            y = self.moe(y)
        else:
            fc1, fc2 = cast(nn.Linear, self.fc1), cast(nn.Linear, self.fc2)  # checked in __init__
            if self.dw is None:
                y = O.dense_ffn(y, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
            else:
                y = O.locality_ffn(y, hw, fc1.weight, fc1.bias, self.dw.weight, self.dw.bias,
                                   fc2.weight, fc2.bias)
        return x + O.drop_path(y, self.drop_path, self.training)


class Head(nn.Module):
    """Task head: mean token → linear (``"cls"``) or 1×1 conv → input-size logits (``"dense"``)."""

    def __init__(self, kind: str, embed: int, outputs: int) -> None:
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.zeros(outputs, embed))
        self.bias = nn.Parameter(torch.zeros(outputs))

    def forward(self, x: Tensor, hw: tuple[int, int], size: tuple[int, int]) -> Tensor:
        return head_forward(self.kind, x, hw, size, self.weight, self.bias)


def head_forward(kind: str, x: Tensor, hw: tuple[int, int], size: tuple[int, int],
                 weight: Tensor, bias: Tensor) -> Tensor:
    """Apply a classification or dense head to normalised tokens."""
    if kind == "cls":
        return F.linear(x.mean(1), weight, bias)
    m = F.conv2d(O.tokens_to_map(x, hw), weight[:, :, None, None], bias)
    return O.upsample(m, size)


def resolve_indices(out_indices: Iterable[int], depth: int) -> list[int]:
    """Map (possibly negative) block indices to ``0 … depth-1`` or raise :class:`ArchError`."""
    out = []
    for i in out_indices:
        j = i + depth if i < 0 else i
        if not 0 <= j < depth:
            raise ArchError(f"out index {i} outside the {depth} blocks of the active subnet",
                            key="out_indices", value=i)
        out.append(j)
    return out


class ViTMVTNet(CheckedLoad, nn.Module):
    """A plain single-task ViT-MVT network (fixed widths, ordinary layers)."""

    def __init__(self, *, stem: Stem, patch: nn.Conv2d, pos: PosEmbed, blocks: Sequence[Block],
                 norm: nn.LayerNorm, head: Head, out_indices: Sequence[int] = (-1,)) -> None:
        super().__init__()
        self.stem, self.patch, self.pos = stem, patch, pos
        self.blocks = nn.ModuleList(blocks)
        self.norm, self.head = norm, head
        self.out_indices = tuple(out_indices)

    def block(self, i: int) -> Block:
        """Block ``i`` (``blocks`` holds Blocks only)."""
        return cast(Block, self.blocks[i])

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Stem, patch convolution and position embedding → tokens and grid size."""
        return O.patch_embed(self.stem(x), self.patch.weight, self.patch.bias, self.pos.weight)

    def forward_features(self, x: Tensor, out_indices: Sequence[int] | None = None) -> list[Tensor]:
        """2-D maps (B, E, h, w) after the chosen blocks (for detection / segmentation necks)."""
        want = set(resolve_indices(self.out_indices if out_indices is None else out_indices,
                                   len(self.blocks)))
        reset_auxiliary(moe_layers(self))
        t, hw = self.embed(x)
        maps = {}
        for i, blk in enumerate(self.blocks):
            t = blk(t, hw)
            if i in want:
                maps[i] = O.tokens_to_map(t, hw)
        return [maps[i] for i in resolve_indices(self.out_indices if out_indices is None
                                                  else out_indices, len(self.blocks))]

    def forward_head(self, t: Tensor, hw: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """Final LayerNorm and the task head."""
        e = t.shape[-1]
        t = F.layer_norm(t, (e,), self.norm.weight, self.norm.bias, O.LN_EPS)
        return self.head(t, hw, size)

    def forward(self, x: Tensor) -> Tensor:
        reset_auxiliary(moe_layers(self))
        t, hw = self.embed(x)
        for blk in self.blocks:
            t = blk(t, hw)
        return self.forward_head(t, hw, (x.shape[-2], x.shape[-1]))


class MultiTaskViTMVT(CheckedLoad, nn.Module):
    """Task networks that share module objects; ``forward_all`` runs each shared prefix once."""

    def __init__(self, nets: dict[str, ViTMVTNet]) -> None:
        super().__init__()
        self.tasks = tuple(nets)
        self.nets = nn.ModuleDict(nets)

    def task_model(self, task: str) -> ViTMVTNet:
        """The plain network of ``task`` (its shared modules stay shared with the others)."""
        if task not in self.nets:
            raise UnknownTaskError(f"unknown task {task!r}; the model has {list(self.tasks)}")
        return cast(ViTMVTNet, self.nets[task])  # ``nets`` holds ViTMVTNets only

    def forward(self, x: Tensor, task: str | None = None) -> Tensor | dict[str, Tensor]:
        """Output of one task, or of all tasks when ``task`` is None."""
        return self.forward_all(x) if task is None else self.task_model(task)(x)

    def forward_all(self, x: Tensor) -> dict[str, Tensor]:
        """Every task's output; blocks whose modules are shared by a group of tasks run once."""
        nets = {t: self.task_model(t) for t in self.tasks}
        size = (x.shape[-2], x.shape[-1])
        with accumulating(moe_layers(self)):  # the MoE balance losses add up over the tasks
            groups = self._grouped_blocks(x, nets)
        out = {}
        for ts, h, hw in groups:
            for t in ts:
                out[t] = nets[t].forward_head(h, hw, size)
        return {t: out[t] for t in self.tasks}

    @staticmethod
    def _grouped_blocks(x: Tensor, nets: dict[str, ViTMVTNet]) -> list[tuple[list[str], Tensor, tuple[int, int]]]:
        """Tokens after the last block per group of tasks; a block whose modules a group shares
        runs once for the group."""
        buckets: dict[tuple[int, ...], list[str]] = {}
        for t, net in nets.items():
            buckets.setdefault((id(net.stem), id(net.patch), id(net.pos)), []).append(t)
        groups = [(ts, *nets[ts[0]].embed(x)) for ts in buckets.values()]
        first = next(iter(nets.values()))
        for i in range(len(first.blocks)):
            nxt = []
            for ts, h, hw in groups:
                sub: dict[tuple[int, ...], list[str]] = {}
                for t in ts:
                    sub.setdefault(nets[t].block(i).identity(), []).append(t)
                for sts in sub.values():
                    nxt.append((sts, nets[sts[0]].blocks[i](h, hw), hw))
            groups = nxt
        return groups
