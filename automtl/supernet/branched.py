"""``BranchedModel``: the deployable network of one fixed policy (a tree of shared layers)."""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automtl.errors import UnknownTaskError
from automtl.supernet._plan import Program, ref_name, run_program
from automtl.supernet.policy import Policy


class BranchedModel(nn.Module):
    """A plain ``nn.Module`` computing ``{task: output}``; each shared layer runs once per group.

    Built by :meth:`MTLModel.compile`. It holds exactly the parameters the policy uses (its own
    copies), so ``sum(p.numel() for p in m.parameters())`` is the deployment size.
    ``forward(x, tasks=[...])`` runs only what those tasks need.
    """

    def __init__(self, layers: Mapping[str, nn.Module], heads: Mapping[str, nn.Module],
                 steps: Sequence[tuple[str, str, tuple[int, ...], int]], n_slots: int,
                 outputs: Mapping[str, tuple[int, ...]], policy: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(dict(layers))
        self.heads = nn.ModuleDict(dict(heads))
        self.tasks: list[str] = list(outputs)
        self.policy_dict = policy
        self._program = Program([_as_step(s) for s in steps], n_slots, {t: tuple(o) for t, o in outputs.items()})
        self._names = [s[0] for s in steps]
        self._subsets: dict[tuple[str, ...], tuple[Program, list[str]]] = {}

    @classmethod
    def build(cls, program: Program, modules: Sequence[nn.Module], heads: Mapping[str, nn.Module],
              policy: Policy | None = None, *, sparse_deltas: bool = False) -> BranchedModel:
        """Copy the modules a program uses (each once) into a standalone model (delta layers
        keep their non-zero ΔW entries only; see :func:`~automtl.supernet._deltas.deploy_copy`)."""
        from automtl.supernet._deltas import deploy_copy

        copies: dict[int, nn.Module] = {}
        memo: dict[int, Any] = {}
        layers: dict[str, nn.Module] = {}
        steps = []
        for step, module in zip(program.steps, modules):
            name = ref_name(step.ref)
            if type(module) is nn.ReLU and module.inplace:
                name += "__inplace"  # see inplace_relu_steps: decided per step
            if name not in layers:
                if id(module) not in copies:
                    copies[id(module)] = deploy_copy(module, memo, sparse=sparse_deltas)
                layers[name] = copies[id(module)]
            steps.append((name, step.op, step.inputs, step.out))
        head_copies = {t: copy.deepcopy(h) for t, h in heads.items()}
        return cls(layers, head_copies, steps, program.n_slots, program.outputs,
                   policy.to_dict() if policy is not None else None)

    @property
    def steps(self) -> list[tuple[str, str, tuple[int, ...], int]]:
        """``(module name, op, input slots, output slot)`` in execution order."""
        return [(n, s.op, s.inputs, s.out) for n, s in zip(self._names, self._program.steps)]

    def _select(self, tasks: Sequence[str] | None) -> tuple[Program, list[str]]:
        if tasks is None:
            return self._program, self._names
        key = tuple(tasks)
        hit = self._subsets.get(key)
        if hit is None:
            unknown = [t for t in key if t not in self.tasks]
            if unknown:
                raise UnknownTaskError(f"unknown task(s) {unknown}; this model computes {self.tasks}")
            sub = self._program.prune(key)
            index = {id(s): i for i, s in enumerate(self._program.steps)}
            hit = (sub, [self._names[index[id(s)]] for s in sub.steps])
            self._subsets[key] = hit
        return hit

    def forward(self, x: torch.Tensor, tasks: list[str] | None = None) -> dict[str, Any]:
        program, names = self._select(tasks)
        feats = run_program(program, [self.layers[name] for name in names], x)
        out: dict[str, Any] = {}
        for task, slots in program.outputs.items():
            head = self.heads[task]
            out[task] = head(feats[task]) if len(slots) == 1 else head(*feats[task])
        return out

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, steps={len(self._names)}"


def _as_step(s: tuple[str, str, tuple[int, ...], int]) -> Any:
    from automtl.supernet._plan import Step

    name, op, inputs, out = s
    return Step(("compiled", name, ""), op, tuple(inputs), out)
