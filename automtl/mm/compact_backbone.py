"""A ViT-MVT subnet for several tasks with fixed sharing, every weight stored once.

The deployable form of layer-adaptive sharing (what ``tools/merge_checkpoints.py`` writes and
what a trained :class:`~automtl.mm.shared_backbone.ViTMVTSharingBackbone` exports to): a block
holds its LPU, norms, relative bias, MHSE and depthwise conv once, and each of its qkv / proj /
fc1 / fc2 linears as ``{"shared": Linear, <task>: Linear, …}`` with only the weights some task
uses. State-dict keys follow the plain ViT-MVT network (``blocks.<i>.norm1.weight``), with the
linears' owner inserted: ``blocks.<i>.qkv.shared.weight``, ``blocks.<i>.qkv.det.weight``;
a task's own conv aggregation blocks are ``aggregation.<task>.<i>.…``.
"""
from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from automtl.errors import ConfigError
from automtl.mm.scopes import register_mm
from automtl.mm.shared_backbone import GroupedViT, read_genes

#: the owner key of a weight every sharing task uses
SHARED_KEY = "shared"
#: the adaptive linears of a block, in forward order (ViT-MVT's ``LINEARS``)
LINEAR_NAMES = ("qkv", "proj", "fc1", "fc2")


class TaskLinears(nn.ModuleDict):
    """The versions of one linear: ``"shared"`` and/or per-task, only those some task uses."""

    def __init__(self, in_features: int, out_features: int, routes: Mapping[str, str]) -> None:
        super().__init__({k: nn.Linear(in_features, out_features) for k in sorted(set(routes.values()))})
        #: task → owner key ("shared" or the task's own name)
        self.routes = dict(routes)
        for lin in self.values():
            assert isinstance(lin, nn.Linear)
            nn.init.trunc_normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def pick(self, task: str) -> nn.Linear:
        """The linear ``task`` uses."""
        return self[self.routes[task]]  # type: ignore[return-value]


class CompactBlock(nn.Module):
    """One ViT-MVT block whose linears may differ per task; every other part is shared."""

    def __init__(self, embed: int, heads: int, hidden: int, grid: int,
                 routes: Mapping[str, Mapping[str, str]], drop_path: float = 0.0) -> None:
        super().__init__()
        from search_spaces.vit_mvt._config import HEAD_DIM
        from search_spaces.vit_mvt._plain import Block

        base = Block.new(embed, heads, hidden, grid, drop_path)
        self.lpu, self.norm1, self.rel, self.se = base.lpu, base.norm1, base.rel, base.se
        self.norm2, self.dw = base.norm2, base.dw
        nn.init.trunc_normal_(self.rel.table, std=0.02)
        q = HEAD_DIM * heads
        self.qkv = TaskLinears(embed, 3 * q, routes["qkv"])
        self.proj = TaskLinears(q, embed, routes["proj"])
        self.fc1 = TaskLinears(embed, hidden, routes["fc1"])
        self.fc2 = TaskLinears(hidden, embed, routes["fc2"])
        self.drop_path = drop_path
        self._views: dict[str, Any] = {}  # per task, a plain Block over these very modules

    def linears(self) -> dict[str, TaskLinears]:
        """The adaptive linears by name."""
        return {"qkv": self.qkv, "proj": self.proj, "fc1": self.fc1, "fc2": self.fc2}

    def route(self, task: str) -> tuple[str, ...]:
        """The owner of each linear ``task`` uses (equal routes → the same function)."""
        return tuple(lin.routes[task] for lin in self.linears().values())

    def view(self, task: str) -> nn.Module:
        """``task``'s block as a plain ViT-MVT ``Block`` sharing these modules (not registered,
        so every weight appears once in the state dict)."""
        from search_spaces.vit_mvt._plain import Block

        v = self._views.get(task)
        if v is None:
            v = Block(lpu=self.lpu, norm1=self.norm1, qkv=self.qkv.pick(task), rel=self.rel,
                      proj=self.proj.pick(task), se=self.se, norm2=self.norm2, fc1=self.fc1.pick(task),
                      dw=self.dw, fc2=self.fc2.pick(task), drop_path=self.drop_path)
            self._views[task] = v
        v.training = self.training
        return v

    def forward(self, x: Tensor, hw: tuple[int, int], task: str) -> Tensor:
        return self.view(task)(x, hw)


def sharing_routes(arch: Any, tasks: Sequence[str]) -> list[dict[str, dict[str, str]]]:
    """Per block, ``{linear: {task: owner}}`` of a parsed ViT-MVT ``Arch`` (a single task
    always owns its weights as ``"shared"``: there is nothing to tell apart)."""
    return [{lin: {t: SHARED_KEY if len(tasks) == 1 or arch.shared(i, lin, t) else t for t in tasks}
             for lin in LINEAR_NAMES} for i in range(arch.depth)]


@register_mm()
class ViTMVTMultiTaskBackbone(GroupedViT):
    """A ViT-MVT subnet serving ``tasks`` with fixed layer-adaptive sharing.

    Args:
        subnet: subnet YAML path or gene dict; its sharing genes (or ``sharing``) say which
            task uses the shared weight of each linear (missing genes: shared).
        space: ``"tiny"``, ``"small"`` or ``"base"`` (checks the genes; sets the grid of the
            relative position bias).
        tasks: task names (one task: a plain single-task backbone, ``forward(x)``).
        out_indices: block indices per task (a mapping) or for every task.
        sharing: optional sharing genes kept apart from the architecture.
        final_norm: apply the final LayerNorm to the last block's map (one flag or per task).
        aggregation: per task, blocks after which it adds its own conv aggregation block
            (ViT-MVT's detection networks: ``dict(det=(2, 5, 9, 13))`` for T / S).
        drop_path_rate: stochastic depth of the last block (linear from 0).
        init_cfg: mmengine initialisation config (e.g. a merged checkpoint).
    """

    def __init__(self, subnet: str | os.PathLike[str] | Mapping[str, Any], space: str = "tiny",
                 tasks: Sequence[str] = ("cls", "det", "seg"),
                 out_indices: Sequence[int] | Mapping[str, Sequence[int]] = (-1,),
                 sharing: Mapping[str, Any] | None = None, final_norm: bool | Mapping[str, bool] = True,
                 aggregation: Mapping[str, Sequence[int]] | None = None,
                 drop_path_rate: float = 0.0, init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from search_spaces.vit_mvt import build_space
        from search_spaces.vit_mvt._config import PATCH, STEM_CHANNELS
        from search_spaces.vit_mvt._ops import LN_EPS
        from search_spaces.vit_mvt._plain import PosEmbed, Stem

        self.tasks = tuple(tasks)
        if not self.tasks or SHARED_KEY in self.tasks:
            raise ConfigError(f"tasks must be non-empty and none may be called {SHARED_KEY!r}",
                              key="backbone.tasks", value=list(self.tasks))
        kinds = {t: ("cls" if t.startswith("cls") else "dense") for t in self.tasks}
        space_obj = build_space(space, self.tasks, num_outputs={t: 1 for t in self.tasks}, head_kinds=kinds)
        arch = space_obj.parse({**read_genes(subnet), **dict(sharing or {})})
        self.genes = space_obj.canonical({**read_genes(subnet), **dict(sharing or {})})
        self.space_name = space
        self.depth, self.embed_dims = arch.depth, arch.embed
        e, grid = arch.embed, space_obj.cfg.grid
        self.stem = Stem()
        self.patch = nn.Conv2d(STEM_CHANNELS, e, PATCH, PATCH)
        self.pos = PosEmbed(e, grid)
        nn.init.trunc_normal_(self.pos.weight, std=0.02)
        routes = sharing_routes(arch, self.tasks)
        self.blocks = nn.ModuleList(
            CompactBlock(e, arch.heads[i], arch.hidden[i], grid, routes[i],
                         drop_path=drop_path_rate * i / max(arch.depth - 1, 1)) for i in range(arch.depth))
        self.norm = nn.LayerNorm(e, eps=LN_EPS)
        self.setup_heads_side(out_indices, final_norm, aggregation)

    def block(self, i: int) -> CompactBlock:
        """Block ``i``."""
        b = self.blocks[i]
        assert isinstance(b, CompactBlock)
        return b

    def embed_tokens(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        from search_spaces.vit_mvt._ops import patch_embed

        return patch_embed(self.stem(x), self.patch.weight, self.patch.bias, self.pos.weight)

    def run_block(self, i: int, x: Tensor, hw: tuple[int, int], task: str) -> Tensor:
        return self.blocks[i](x, hw, task)

    def route(self, i: int, task: str) -> Hashable:
        return self.block(i).route(task)

    def final_norm_tokens(self, x: Tensor) -> Tensor:
        return self.norm(x)

    def sharing_genes(self) -> dict[str, str]:
        """The fixed decisions as sharing genes (``share.<i>.<linear>.<task>``)."""
        return {k: v for k, v in self.genes.items() if k.startswith("share.")}
