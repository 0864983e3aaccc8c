"""ViT-MVT with layer-adaptive sharing as the one backbone of the multi-task OpenMMLab model.

:class:`ViTMVTSharingBackbone` holds the ViT-MVT supernet at one subnet (e.g. the released T
subnet) for several tasks: every qkv / proj / fc1 / fc2 linear has a shared weight, one weight
per task and a per-task sharing score (score > 0.5 → the task uses the shared weight), learned
with a straight-through gate unless sharing genes fix the choices. Everything else in a block
(LPU, norms, relative bias, MHSE, depthwise conv) is shared by all tasks, as in ViT-MVT.

:func:`grouped_features` runs a batch for several tasks at once: tasks whose path so far is the
same (same group, same weights in a block) share one computation of each block, so a block
every task shares runs once per image.
"""
from __future__ import annotations

import abc
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from automtl.errors import ConfigError, UnknownTaskError
from automtl.mm.scopes import register_mm

#: what a task's features are: the maps after the chosen blocks, finest (or first) first
Features = tuple[Tensor, ...]


def task_out_indices(out_indices: Sequence[int] | Mapping[str, Sequence[int]], tasks: Sequence[str],
                     depth: int) -> dict[str, tuple[int, ...]]:
    """Per task, the block indices (0 … depth-1) whose maps it returns; one sequence serves all
    tasks, a mapping gives each task its own (every task must be named)."""
    per_task = out_indices if isinstance(out_indices, Mapping) else {t: out_indices for t in tasks}
    missing = [t for t in tasks if t not in per_task]
    extra = [t for t in per_task if t not in tasks]
    if missing or extra:
        raise ConfigError(f"out_indices must name every task {list(tasks)} (missing {missing}, "
                          f"unknown {extra})", key="backbone.out_indices")
    out: dict[str, tuple[int, ...]] = {}
    for t in tasks:
        idx = []
        for i in per_task[t]:
            j = int(i) + depth if int(i) < 0 else int(i)
            if not 0 <= j < depth or isinstance(i, bool):
                raise ConfigError(f"block index {i} of task {t!r} is outside the {depth} blocks",
                                  key="backbone.out_indices", value=i)
            idx.append(j)
        if not idx:
            raise ConfigError(f"task {t!r} asks for no block output", key="backbone.out_indices")
        out[t] = tuple(idx)
    return out


def grouped_features(x: Tensor, tasks: Sequence[str], *, depth: int,
                     embed: Callable[[Tensor], tuple[Tensor, tuple[int, int]]],
                     block: Callable[[int, Tensor, tuple[int, int], str], Tensor],
                     route: Callable[[int, str], Hashable],
                     after: Callable[[int, str], Callable[[Tensor, tuple[int, int]], Tensor] | None],
                     to_map: Callable[[Tensor, tuple[int, int], bool], Tensor],
                     normed: Callable[[int, str], bool],
                     out_indices: Mapping[str, Sequence[int]]) -> dict[str, Features]:
    """``{task: maps}`` of one batch for ``tasks``, each block run once per group of tasks.

    ``route(i, task)`` names the weights ``task`` uses in block ``i``: tasks of one group with
    equal routes stay one group (one ``block(i, tokens, hw, representative)`` call). A task
    for which ``after(i, task)`` gives a function (its own module after block ``i``, e.g. a
    detection conv aggregation) applies it to the block's output and goes on alone.
    ``to_map(tokens, hw, normed)`` makes a returned map, with the final norm where
    ``normed(i, task)``; tasks of a group share each map.
    """
    tokens, hw = embed(x)
    groups: list[tuple[list[str], Tensor]] = [(list(tasks), tokens)]
    maps: dict[str, dict[int, Tensor]] = {t: {} for t in tasks}

    def record(i: int, members: list[str], y: Tensor) -> None:
        made: dict[bool, Tensor] = {}
        for t in members:
            if i in out_indices[t]:
                flag = normed(i, t)
                if flag not in made:
                    made[flag] = to_map(y, hw, flag)
                maps[t][i] = made[flag]

    for i in range(depth):
        nxt: list[tuple[list[str], Tensor]] = []
        for members, h in groups:
            split: dict[Hashable, list[str]] = {}
            for t in members:
                split.setdefault(route(i, t), []).append(t)
            for sub in split.values():
                y = block(i, h, hw, sub[0])
                stay = [t for t in sub if after(i, t) is None]
                if stay:
                    record(i, stay, y)
                    nxt.append((stay, y))
                for t in sub:
                    fn = after(i, t)
                    if fn is not None:
                        yt = fn(y, hw)
                        record(i, [t], yt)
                        nxt.append(([t], yt))
        groups = nxt
    return {t: tuple(maps[t][i] for i in out_indices[t]) for t in tasks}


def task_flags(value: bool | Mapping[str, bool], tasks: Sequence[str], key: str) -> dict[str, bool]:
    """A per-task flag from one bool or a mapping naming every task."""
    if isinstance(value, Mapping):
        missing = [t for t in tasks if t not in value]
        if missing or any(t not in tasks for t in value):
            raise ConfigError(f"must name every task {list(tasks)}", key=key, value=dict(value))
        return {t: bool(value[t]) for t in tasks}
    return {t: bool(value) for t in tasks}


def build_aggregation(aggregation: Mapping[str, Sequence[int]] | None, tasks: Sequence[str], depth: int,
                      channels: int) -> nn.ModuleDict:
    """``{task: {block index: ConvAggregation}}``: ViT-MVT's detection conv aggregation blocks
    (``automtl.mm.backbones.ConvAggregation``) a task adds after some blocks."""
    from automtl.mm.backbones import ConvAggregation

    out = nn.ModuleDict()
    for task, blocks in (aggregation or {}).items():
        if task not in tasks:
            raise ConfigError(f"aggregation for unknown task {task!r}; tasks: {list(tasks)}",
                              key="backbone.aggregation")
        idx = task_out_indices({task: blocks}, (task,), depth)[task]
        out[task] = nn.ModuleDict({str(i): ConvAggregation(channels) for i in idx})
    return out


class GroupedViT(BaseModule, abc.ABC):
    """Base of the multi-task ViT-MVT backbones: ``forward(x, task)`` → that task's maps,
    ``forward_all(x, tasks)`` → every task's maps with shared blocks run once.

    Per task: ``out_indices`` (blocks whose maps it gets), ``final_norm`` (the final
    LayerNorm on the last block's map) and ``aggregation`` (its own conv aggregation blocks
    after some blocks, as ViT-MVT's detection networks).
    """

    tasks: tuple[str, ...]
    depth: int
    embed_dims: int
    out_indices: dict[str, tuple[int, ...]]
    final_norm: dict[str, bool]
    aggregation: nn.ModuleDict

    def check_task(self, task: str) -> str:
        """``task`` if the backbone serves it, else :class:`UnknownTaskError` naming the tasks."""
        if task not in self.tasks:
            raise UnknownTaskError(f"unknown task {task!r}; the backbone serves {list(self.tasks)}")
        return task

    def setup_heads_side(self, out_indices: Sequence[int] | Mapping[str, Sequence[int]],
                         final_norm: bool | Mapping[str, bool],
                         aggregation: Mapping[str, Sequence[int]] | None) -> None:
        """Set the per-task ``out_indices``, ``final_norm`` and ``aggregation``."""
        self.out_indices = task_out_indices(out_indices, self.tasks, self.depth)
        self.final_norm = task_flags(final_norm, self.tasks, "backbone.final_norm")
        self.aggregation = build_aggregation(aggregation, self.tasks, self.depth, self.embed_dims)

    # hooks of the concrete backbones -----------------------------------------------------
    @abc.abstractmethod
    def embed_tokens(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Stem, patch convolution and position embedding → tokens and grid."""

    @abc.abstractmethod
    def run_block(self, i: int, x: Tensor, hw: tuple[int, int], task: str) -> Tensor:
        """Block ``i`` with the weights of ``task``."""

    @abc.abstractmethod
    def route(self, i: int, task: str) -> Hashable:
        """Names of the weights ``task`` uses in block ``i`` (equal routes → same function)."""

    @abc.abstractmethod
    def final_norm_tokens(self, x: Tensor) -> Tensor:
        """The final LayerNorm (shared by every task)."""

    # ------------------------------------------------------------------------------------
    def _after(self, i: int, task: str) -> Callable[[Tensor, tuple[int, int]], Tensor] | None:
        own = self.aggregation[task] if task in self.aggregation else None
        if not isinstance(own, nn.ModuleDict) or str(i) not in own:
            return None
        agg = own[str(i)]

        def apply(y: Tensor, hw: tuple[int, int]) -> Tensor:
            b, n, c = y.shape
            m = agg(y.transpose(1, 2).reshape(b, c, hw[0], hw[1]))
            return m.flatten(2).transpose(1, 2)

        return apply

    def _normed(self, i: int, task: str) -> bool:
        return self.final_norm[task] and i == self.depth - 1

    def _to_map(self, y: Tensor, hw: tuple[int, int], normed: bool) -> Tensor:
        if normed:
            y = self.final_norm_tokens(y)
        b, _, c = y.shape
        return y.transpose(1, 2).reshape(b, c, hw[0], hw[1])

    def forward_all(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Features]:
        """``{task: maps}`` for the same images through several tasks; a block shared by a
        group of tasks runs once for the group."""
        tasks = self.tasks if tasks is None else tuple(self.check_task(t) for t in tasks)
        return grouped_features(x, tasks, depth=self.depth, embed=self.embed_tokens,
                                block=self.run_block, route=self.route, after=self._after,
                                to_map=self._to_map, normed=self._normed, out_indices=self.out_indices)

    def forward(self, x: Tensor, task: str | None = None) -> Features:  # type: ignore[override]
        """The maps of one task, at its ``out_indices`` (the last one after the final norm);
        ``task`` may be omitted when the backbone serves one task."""
        if task is None:
            if len(self.tasks) != 1:
                raise UnknownTaskError(f"pass task= one of {list(self.tasks)} (or call forward_all)")
            task = self.tasks[0]
        return self.forward_all(x, (task,))[task]


def read_genes(subnet: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A candidate dict from a subnet YAML path or a mapping of genes."""
    from search_spaces.vit_mvt import load_subnet

    if isinstance(subnet, Mapping):
        return dict(subnet)
    if isinstance(subnet, (str, os.PathLike)):
        return load_subnet(subnet)
    raise ConfigError("must be a subnet YAML path or a mapping of genes", key="backbone.subnet",
                      value=subnet)


@register_mm()
class ViTMVTSharingBackbone(GroupedViT):
    """The ViT-MVT supernet at one subnet, shared by ``tasks`` with layer-adaptive sharing.

    Args:
        subnet: subnet YAML path (e.g. ``configs/nas/vit_mvt_tiny/subnet.yaml``) or gene dict;
            sharing genes (``share.<i>.<linear>.<task>``) in it, or in ``sharing``, fix the
            choices, otherwise the learned scores decide.
        space: ``"tiny"``, ``"small"`` or ``"base"`` (the supernet holding the subnet).
        tasks: task names (the keys of the multi-task model's task models).
        out_indices: block indices per task (a mapping) or for every task.
        sharing: optional sharing genes kept apart from the architecture.
        final_norm: apply the final LayerNorm to the last block's map (one flag or per task).
        aggregation: per task, blocks after which it adds its own conv aggregation block
            (ViT-MVT's detection networks: ``dict(det=(2, 5, 9, 13))`` for T / S).
        drop_path_rate: stochastic depth of the last block (linear from 0).
        score_init: initial sharing score (> 0.5: every task starts on the shared weights).
        init_cfg: mmengine initialisation config (e.g. a pretrained checkpoint).
    """

    def __init__(self, subnet: str | os.PathLike[str] | Mapping[str, Any], space: str = "tiny",
                 tasks: Sequence[str] = ("cls", "det", "seg"),
                 out_indices: Sequence[int] | Mapping[str, Sequence[int]] = (-1,),
                 sharing: Mapping[str, Any] | None = None, final_norm: bool | Mapping[str, bool] = True,
                 aggregation: Mapping[str, Sequence[int]] | None = None,
                 drop_path_rate: float = 0.0, score_init: float = 1.0,
                 init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from search_spaces.vit_mvt import build_space, build_supernet

        self.tasks = tuple(tasks)
        if len(self.tasks) < 2:
            raise ConfigError("a shared backbone needs at least two tasks", key="backbone.tasks",
                              value=list(self.tasks))
        kinds = {t: ("cls" if t.startswith("cls") else "dense") for t in self.tasks}
        space_obj = build_space(space, self.tasks, num_outputs={t: 1 for t in self.tasks}, head_kinds=kinds)
        genes = {**read_genes(subnet), **dict(sharing or {})}
        self.supernet = build_supernet(space_obj, drop_path_rate=drop_path_rate, score_init=score_init)
        self.supernet.set_arch(genes)
        # the supernet's own task heads stay unused: the OpenMMLab heads replace them
        for p in (*self.supernet.head_w.parameters(), *self.supernet.head_b.parameters()):
            p.requires_grad_(False)
        self.depth = self.supernet.arch.depth
        self.embed_dims = self.supernet.arch.embed
        self.setup_heads_side(out_indices, final_norm, aggregation)

    def embed_tokens(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        return self.supernet.embed(x)

    def run_block(self, i: int, x: Tensor, hw: tuple[int, int], task: str) -> Tensor:
        return self.supernet.blocks[i](x, hw, task)

    def route(self, i: int, task: str) -> Hashable:
        block = self.supernet.block(i)
        linears = block.linears()
        route = tuple("shared" if lin.decision(task) else task for lin in linears.values())
        # a mixture-of-experts FFN routes tokens by task: no two tasks compute it alike
        return (*route, task) if block.kind == "moe" else route

    def final_norm_tokens(self, x: Tensor) -> Tensor:
        from search_spaces.vit_mvt._ops import LN_EPS

        e = self.embed_dims
        return F.layer_norm(x, (e,), self.supernet.norm_w[:e], self.supernet.norm_b[:e], LN_EPS)

    def sharing_genes(self) -> dict[str, str]:
        """The current decisions as sharing genes (``share.<i>.<linear>.<task>``)."""
        return self.supernet.sharing_report()

    def forward_all(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Features]:
        """As :meth:`GroupedViT.forward_all`; while training with learned scores every task
        runs on its own (the straight-through gates need each task's own graph)."""
        if self.training and not self.supernet.fixed_sharing:
            return {t: GroupedViT.forward_all(self, x, (t,))[t] for t in (tasks or self.tasks)}
        return GroupedViT.forward_all(self, x, tasks)
