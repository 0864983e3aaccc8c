"""An AutoMTL branched model as the one backbone of the multi-task OpenMMLab model.

:class:`AutoMTLMultiTaskBackbone` compiles the policy for several tasks at once
(``MTLModel(backbone, …).compile``-style: each layer a task group shares is one module and runs
once per group), and returns every task's maps at the chosen stride levels:
``forward(x, task)`` → one task's tuple, ``forward_all(x, tasks)`` → ``{task: tuple}``. It is
the multi-task sibling of :class:`~automtl.mm.backbones.AutoMTLBranchedBackbone` (one task's
branch) and takes the same arguments and checkpoints.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from automtl.errors import ConfigError, UnknownTaskError
from automtl.mm.backbones import AutoMTLBranchedBackbone, _Collect
from automtl.mm.scopes import register_mm


def policy_tasks(policy: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[str, ...]:
    """The tasks of a policy JSON path or dict."""
    from automtl.supernet import Policy

    if isinstance(policy, (str, os.PathLike)):
        return tuple(Policy.load(policy).tasks)
    if isinstance(policy, Mapping):
        return tuple(Policy.from_dict(policy, source="backbone.policy").tasks)
    raise ConfigError("must be a policy JSON path or its dict", key="backbone.policy", value=policy)


@register_mm()
class AutoMTLMultiTaskBackbone(AutoMTLBranchedBackbone):
    """Every task of an AutoMTL policy as one backbone; layers tasks share run once per group.

    Args:
        backbone: the backbone spec (``"torchvision:resnet34"``, a prototxt path, a module…).
        policy: a policy JSON path (``Policy.save``) or its dict.
        tasks: the tasks to serve (default: the policy's); their names are the multi-task
            model's task names.
        out_indices: indices into the stride levels (every stride at which the backbone has a
            map, ascending), the same for every task.
        input_shape, bn_per_task, init_cfg: as :class:`AutoMTLBranchedBackbone` (``Pretrained``
            loads an ``MTLModel`` checkpoint or an mm checkpoint of this backbone).
    """

    def __init__(self, backbone: Any, policy: str | os.PathLike[str] | Mapping[str, Any],
                 tasks: Sequence[str] | None = None, out_indices: Sequence[int] = (-1,),
                 input_shape: Sequence[int] | None = None, bn_per_task: bool = True,
                 init_cfg: dict | list[dict] | None = None) -> None:
        known = policy_tasks(policy)
        chosen = tuple(tasks) if tasks is not None else known
        unknown = [t for t in chosen if t not in known]
        if not chosen or unknown:
            raise ConfigError(f"tasks {list(unknown or chosen)} are not the policy's tasks {list(known)}",
                              key="backbone.tasks", value=list(chosen))
        self.tasks = chosen  # read by _compile, which the parent's __init__ calls
        super().__init__(backbone, policy, task=chosen[0], out_indices=out_indices, input_shape=input_shape,
                         bn_per_task=bn_per_task, init_cfg=init_cfg)

    def _compile(self, model: Any, pol: Any) -> nn.Module:
        """The branched model of every served task, its outputs the chosen stride levels."""
        import dataclasses

        from automtl.supernet import BranchedModel
        from automtl.supernet._plan import build_program, inplace_relu_steps

        spec = dataclasses.replace(model.spec, outputs=list(self._nodes))
        units = spec.units
        rows = {t: pol.task_choices(t) for t in self.tasks}
        prog = build_program(spec, list(self.tasks), choice=lambda i, t: rows[t][units[i].name],
                             share_owner=lambda i, t: t if units[i].norm_per_task else "",
                             proj_owner=lambda i, t: t if units[i].proj_norm_per_task else "")
        prog = prog.prune(list(self.tasks))
        modules = [model.module_of(s.ref) for s in prog.steps]
        relu = nn.ReLU(inplace=True)
        modules = [relu if ok else m for m, ok in zip(modules, inplace_relu_steps(prog, modules))]
        return BranchedModel.build(prog, modules, {t: _Collect() for t in self.tasks}, pol)

    def forward_all(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, tuple[Tensor, ...]]:
        """``{task: maps}``; every layer a group of tasks shares runs once for the group."""
        chosen = list(self.tasks if tasks is None else tasks)
        unknown = [t for t in chosen if t not in self.tasks]
        if unknown:
            raise UnknownTaskError(f"unknown task(s) {unknown}; the backbone serves {list(self.tasks)}")
        return {t: tuple(maps) for t, maps in self.branched(x, tasks=chosen).items()}

    def forward(self, x: Tensor, task: str | None = None) -> tuple[Tensor, ...]:  # type: ignore[override]
        """One task's maps (``task`` may be omitted when the backbone serves one task)."""
        if task is None:
            if len(self.tasks) != 1:
                raise UnknownTaskError(f"pass task= one of {list(self.tasks)} (or call forward_all)")
            task = self.tasks[0]
        return self.forward_all(x, [task])[task]
