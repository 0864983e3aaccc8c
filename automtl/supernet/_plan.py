"""Programs: the computation of a fixed policy for several tasks, each shared step run once.

A program is a list of steps ``(ref, input slots, output slot)``. It is built by walking the
backbone once per task and *hash-consing* every module call on ``(module, inputs)``: two tasks
that call the same module on the same value share one step. The result is the tree of the
branched model — it splits exactly where the tasks' computations diverge.

A ``delta`` choice (:mod:`automtl.delta`) reads three slots: the task's input, and the base
task's input and pre-norm output at that layer; the base is walked first (also when it is not
among the requested tasks), so its steps run once and the deltas go on top.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from automtl.supernet._spec import BackboneSpec, UnitKey

# Choice of a task at a unit: "share" | "specialize" | "skip" | "delta".
ChoiceFn = Callable[[int, str], str]


@dataclass(frozen=True)
class Step:
    """Call module ``ref`` on the values in ``inputs``; store the result in ``out``."""

    ref: UnitKey
    op: str
    inputs: tuple[int, ...]
    out: int


@dataclass
class Program:
    """Steps in execution order; slot 0 is the backbone input; ``outputs[task]`` its features."""

    steps: list[Step]
    n_slots: int
    outputs: dict[str, tuple[int, ...]]
    release: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.release:
            self.release = _release_lists(self.steps, self.outputs)

    def refs(self) -> list[UnitKey]:
        """Distinct module references, in first-use order."""
        seen: dict[UnitKey, None] = {}
        for s in self.steps:
            seen.setdefault(s.ref, None)
        return list(seen)

    def prune(self, tasks: Sequence[str]) -> Program:
        """The sub-program that computes only ``tasks``."""
        need = {i for t in tasks for i in self.outputs[t]}
        keep: list[Step] = []
        for step in reversed(self.steps):
            if step.out in need:
                keep.append(step)
                need.update(step.inputs)
        keep.reverse()
        return Program(keep, self.n_slots, {t: self.outputs[t] for t in tasks})


def _release_lists(steps: list[Step], outputs: dict[str, tuple[int, ...]]) -> list[tuple[int, ...]]:
    """For each step, the slots whose last reader it is (freed right after it runs)."""
    keep = {i for outs in outputs.values() for i in outs} | {0}
    last: dict[int, int] = {}
    for k, s in enumerate(steps):
        for i in s.inputs:
            last[i] = k
    per_step: list[list[int]] = [[] for _ in steps]
    for slot, k in last.items():
        if slot not in keep:
            per_step[k].append(slot)
    return [tuple(x) for x in per_step]


def build_program(spec: BackboneSpec, tasks: Sequence[str], choice: ChoiceFn,
                  share_owner: Callable[[int, str], str], proj_owner: Callable[[int, str], str],
                  base: str | None = None) -> Program:
    """Program of ``tasks`` under ``choice`` (see the module docstring); ``base`` is the base
    task of ``delta`` choices."""
    steps: list[Step] = []
    memo: dict[tuple[UnitKey, tuple[int, ...]], int] = {}
    n_slots = [1]

    def emit(ref: UnitKey, op: str, inputs: tuple[int, ...]) -> int:
        key = (ref, inputs)
        slot = memo.get(key)
        if slot is None:
            slot = n_slots[0]
            n_slots[0] += 1
            memo[key] = slot
            steps.append(Step(ref, op, inputs, slot))
        return slot

    outputs: dict[str, tuple[int, ...]] = {}
    base_io: dict[int, tuple[int, int]] = {}  # unit index -> (base input slot, base pre-norm slot)
    order = list(tasks)
    uses_delta = base is not None and any(choice(u.index, t) == "delta" for t in tasks for u in spec.units)
    if uses_delta:
        assert base is not None
        order = [base] + [t for t in tasks if t != base]
    for task in order:
        env: dict[str, int] = {}
        for item in spec.items:
            if item.kind == "input":
                env[item.name] = 0
                continue
            ins = tuple(env[i] for i in item.inputs)
            if item.kind == "op":
                env[item.name] = emit(("op", item.name, ""), "op", ins)
            elif item.kind == "tnorm":
                env[item.name] = emit(("tnorm", item.name, task), "norm", ins)
            else:
                u = item.unit
                assert u is not None
                c = choice(u.index, task)
                if c == "share":
                    slot = emit(("common", u.name, ""), u.op, ins)
                    if task == base:
                        base_io[u.index] = (ins[0], slot)
                    if u.norm:
                        slot = emit(("share_norm", u.name, share_owner(u.index, task)), "norm", (slot,))
                elif c == "specialize":
                    slot = emit(("specific", u.name, task), u.op, ins)
                    if task == base:
                        base_io[u.index] = (ins[0], slot)
                    if u.norm:
                        slot = emit(("spec_norm", u.name, task), "norm", (slot,))
                elif c == "delta":
                    b_in, b_out = base_io[u.index]
                    slot = emit(("delta", u.name, task), u.op, (ins[0], b_in, b_out))
                    if u.norm:
                        slot = emit(("delta_norm", u.name, task), "norm", (slot,))
                else:
                    slot = ins[0]
                    if u.proj is not None:
                        slot = emit(("proj", u.name, ""), u.proj, (slot,))
                        if u.proj_has_norm:
                            slot = emit(("proj_norm", u.name, proj_owner(u.index, task)), "norm", (slot,))
                env[u.out] = slot
        outputs[task] = tuple(env[o] for o in spec.outputs)
    program = Program(steps, n_slots[0], {t: outputs[t] for t in tasks})
    return program.prune(tasks) if uses_delta and base not in tasks else program


def run_program(program: Program, modules: Sequence[nn.Module], x: Any) -> dict[str, Any]:
    """Execute ``program`` (``modules[k]`` runs step ``k``) on input ``x``; features per task."""
    env: list[Any] = [None] * program.n_slots
    env[0] = x
    for step, module, free in zip(program.steps, modules, program.release):
        ins = step.inputs
        if len(ins) == 1:
            env[step.out] = module(env[ins[0]])
        else:
            env[step.out] = module(*[env[i] for i in ins])
        for i in free:
            env[i] = None
    return {t: env[o[0]] if len(o) == 1 else tuple(env[i] for i in o) for t, o in program.outputs.items()}


_BAD = re.compile(r"[^0-9A-Za-z_]")


def ref_name(ref: UnitKey) -> str:
    """An identifier-safe module name for a reference (``layer1__0__conv1__specific__seg``)."""
    kind, node, owner = ref
    parts = [_BAD.sub("_", node.replace(".", "__")), kind] + ([_BAD.sub("_", owner)] if owner else [])
    return "__".join(parts)


def _safe_producer(module: nn.Module) -> bool:
    """Modules whose backward does not read their own output (so it may be overwritten)."""
    from automtl.graph.layers import Eltwise

    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
        return True
    return isinstance(module, Eltwise) and module.operation == "add"


def inplace_relu_steps(program: Program, modules: Sequence[nn.Module]) -> list[bool]:
    """Steps whose ReLU may run in place: its input has no other reader and a safe producer.

    Mirrors what hand-written PyTorch does (``nn.ReLU(inplace=True)`` after conv/BN/add) and
    saves one activation-sized allocation per ReLU.
    """
    readers: dict[int, int] = {}
    for s in program.steps:
        for i in s.inputs:
            readers[i] = readers.get(i, 0) + 1
    for outs in program.outputs.values():
        for i in outs:
            readers[i] = readers.get(i, 0) + 1
    producer = {s.out: m for s, m in zip(program.steps, modules)}
    flags = []
    for s, m in zip(program.steps, modules):
        ok = (type(m) is nn.ReLU and len(s.inputs) == 1 and readers.get(s.inputs[0], 0) == 1
              and s.inputs[0] in producer and _safe_producer(producer[s.inputs[0]]))
        flags.append(ok)
    return flags
