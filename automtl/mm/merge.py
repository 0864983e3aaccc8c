"""Merge per-task checkpoints of one ViT-MVT size into one multi-task checkpoint, by the
layer-adaptive sharing decisions, every shared weight stored once.

Inputs, one per task: an OpenMMLab checkpoint of a single-task model with a plain ViT-MVT
backbone (``ViTMVTSubnetBackbone``: ``backbone.blocks.<i>.qkv.weight``…), a bare exported task
network (``export_subnet(…, task=t)``), or a checkpoint whose backbone is the ViT-MVT supernet
(``…patch_w``, ``…blocks.<i>.qkv.task_weight.<task>``: the multi-task model's
``ViTMVTSharingBackbone`` or ``ViTMVTSupernetBackbone``), cut to the subnet first.

The decisions: per block, linear (qkv, proj, fc1, fc2) and task, "shared" or "specific" — from
learned scores (a checkpoint holding ``…blocks.<i>.<linear>.score.<task>``: score > 0.5 →
shared) or from sharing genes (a subnet YAML or dict, ``share.<i>.<linear>.<task>``; a missing
gene means shared).

How the merged weights are formed (written to the checkpoint's ``meta.merge``):

- a linear some tasks share: its ``shared`` weight is the mean of those tasks' weights (their
  common weight, bit for bit, when they are equal, e.g. tasks cut from one supernet or fine-tuned
  with the shared weights frozen); each task that does not share keeps its own weight;
- every other backbone tensor (stem, patch embedding, position table, norms, LPU, relative
  bias, MHSE, depthwise convs) is shared by all tasks in ViT-MVT, so it is the mean over all
  tasks (again exact when equal); integer buffers (BatchNorm's batch counter) take the largest;
- a task's own conv aggregation blocks (ViT-MVT's detection networks) and its necks and heads
  are kept as they are (``backbone.aggregation.<task>.``, ``task_models.<task>.``).

The result loads into :class:`~automtl.mm.multitask.MMMultiTaskModel` with a
:class:`~automtl.mm.compact_backbone.ViTMVTMultiTaskBackbone` built from the subnet YAML written
next to it (architecture and sharing genes). The report gives bytes and parameters before
(the input files) and after, and how far averaging moved each task's weights.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from automtl.errors import ArchError, AutoMTLError, CheckpointError, ConfigError
from automtl.io import atomic_save, few
from automtl.mm.compact_backbone import LINEAR_NAMES, SHARED_KEY
from automtl.mm.safe_load import read_weights

#: the plain ViT-MVT backbone's top-level modules (its ``head`` is not part of the backbone)
BACKBONE_PARTS = ("stem.", "patch.", "pos.", "blocks.", "norm.")
_LINEAR_KEY = re.compile(r"^blocks\.(\d+)\.(qkv|proj|fc1|fc2)\.(weight|bias)$")
_SCORE_KEY = re.compile(r"(?:^|\.)blocks\.(\d+)\.(qkv|proj|fc1|fc2)\.score\.([^.]+)$")


@dataclass
class TaskInput:
    """One task's checkpoint split into its plain ViT-MVT backbone and its other tensors."""

    task: str
    path: str
    backbone: dict[str, Tensor]
    heads: dict[str, Tensor]
    scores: dict[tuple[int, str, str], float] = field(default_factory=dict)
    #: the task's own conv aggregation blocks (``"<block>.conv1.weight"``…), if any
    aggregation: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class MergeReport:
    """What a merge wrote and how much it saved."""

    out: str
    subnet_yaml: str
    tasks: list[str]
    space: str
    bytes_before: int
    bytes_after: int
    params_before: int
    params_after: int
    backbone_params_before: int
    backbone_params_after: int
    shared_linears: int
    specific_linears: int
    #: per task, the largest relative change ||merged - own|| / ||own|| over its backbone tensors
    max_relative_change: dict[str, float]
    #: per task, the blocks its own conv aggregation follows (the config's ``backbone.aggregation``)
    aggregation: dict[str, list[int]] = field(default_factory=dict)

    def text(self) -> str:
        """A short human-readable summary."""
        ratio = lambda a, b: f"{b / a:.2f}x" if a else "-"
        lines = [
            f"merged {', '.join(self.tasks)} (ViT-MVT-{self.space}) -> {self.out}",
            f"  subnet + sharing genes: {self.subnet_yaml}",
            f"  linears: {self.shared_linears} shared versions, {self.specific_linears} task-specific",
            f"  bytes:      {self.bytes_before:,} -> {self.bytes_after:,} "
            f"({ratio(self.bytes_before, self.bytes_after)})",
            f"  parameters: {self.params_before:,} -> {self.params_after:,} "
            f"({ratio(self.params_before, self.params_after)})",
            f"  backbone parameters: {self.backbone_params_before:,} -> {self.backbone_params_after:,} "
            f"({ratio(self.backbone_params_before, self.backbone_params_after)})",
            "  largest relative change of a task's backbone weight by averaging: "
            + ", ".join(f"{t} {v:.3g}" for t, v in self.max_relative_change.items()),
        ]
        if self.aggregation:
            lines.append(f"  conv aggregation kept per task (config: backbone.aggregation={self.aggregation})")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ reading inputs
def _scores(state: Mapping[str, Tensor]) -> dict[tuple[int, str, str], float]:
    out = {}
    for k, v in state.items():
        m = _SCORE_KEY.search(k)
        if m and v.numel() == 1:
            out[(int(m[1]), m[2], m[3])] = float(v)
    return out


def _head_keys(state: Mapping[str, Tensor], prefix: str, task: str) -> dict[str, Tensor]:
    """The tensors outside the backbone, named as in the multi-task model."""
    root = prefix.split(".", 1)[0] + "." if prefix else None
    if root is None:
        return {}
    rest = {k: v for k, v in state.items() if not k.startswith(root)}
    if any(k.startswith("task_models.") for k in rest):  # already a multi-task checkpoint
        return {k: v for k, v in rest.items() if k.startswith(f"task_models.{task}.")}
    return {f"task_models.{task}.{k}": v for k, v in rest.items()}


def _from_supernet(state: Mapping[str, Tensor], prefix: str, task: str, arch: Mapping[str, Any] | None,
                   path: str) -> dict[str, Tensor]:
    """The plain task network of ``task`` cut from a supernet state dict at ``arch``."""
    from search_spaces.vit_mvt import PRESETS, build_space, build_supernet, export_subnet

    if arch is None:
        raise ConfigError(f"{path} holds a ViT-MVT supernet: name the subnet to cut from it (--subnet "
                          "YAML, or sharing genes in a subnet YAML)", key="subnet")
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    heads = {k.split(".", 1)[1]: v for k, v in sub.items() if k.startswith("head_w.")}
    if task not in heads:
        raise CheckpointError(f"{path}: the supernet serves {sorted(heads)}, not task {task!r}")
    e_max = sub["patch_w"].shape[0]
    sizes = [n for n, c in PRESETS.items() if c.embeds[-1] == e_max]
    if not sizes:
        raise CheckpointError(f"{path}: a supernet of width {e_max} is none of the ViT-MVT spaces "
                              f"{ {n: c.embeds[-1] for n, c in PRESETS.items()} }")
    tasks = tuple(heads)
    space = build_space(sizes[0], tasks, num_outputs={t: int(w.shape[0]) for t, w in heads.items()},
                        head_kinds={t: "cls" if t.startswith("cls") else "dense" for t in tasks})
    with torch.device("meta"):  # no initialisation: every tensor comes from the checkpoint
        net = build_supernet(space)
    net.load_state_dict(sub, assign=True)
    genes = {k: v for k, v in arch.items() if not (k.startswith("share.") and k.split(".")[-1] not in tasks)}
    net.set_arch(genes)
    return {k: v for k, v in export_subnet(net, task=task).state_dict().items() if k.startswith(BACKBONE_PARTS)}


def read_task(task: str, path: str | os.PathLike[str], arch: Mapping[str, Any] | None = None, *,
              state: Mapping[str, Tensor] | None = None) -> TaskInput:
    """Read one task's checkpoint (or its already read ``state``) into its plain backbone
    (ViT-MVT export layout) and heads."""
    p = str(path)
    state = read_weights(p) if state is None else state
    sup = [k for k in state if k.endswith("patch_w")]
    plain = [k for k in state if k.endswith("blocks.0.qkv.weight")]
    if sup:
        prefix = sup[0][: -len("patch_w")]
        backbone = _from_supernet(state, prefix, task, arch, p)
        own = (prefix.split(".", 1)[0] + "." if prefix else "") + f"aggregation.{task}."
        aggregation = {k[len(own):]: v for k, v in state.items() if k.startswith(own)}
    elif plain:
        prefix = plain[0][: -len("blocks.0.qkv.weight")]
        backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        aggregation = {k[len("aggregation."):]: v for k, v in backbone.items() if k.startswith("aggregation.")}
        extra = [k for k in backbone if not k.startswith((*BACKBONE_PARTS, "head.", "aggregation."))]
        if extra:
            raise CheckpointError(f"{p}: backbone tensors the multi-task backbone has no place for: {few(extra)}")
        backbone = {k: v for k, v in backbone.items() if k.startswith(BACKBONE_PARTS)}
    else:
        raise CheckpointError(f"{p}: no ViT-MVT backbone found (expected keys like 'backbone.blocks.0.qkv.weight' "
                              f"or a supernet's 'patch_w'); it has {few(list(state))}")
    return TaskInput(task, p, backbone, _head_keys(state, prefix, task), _scores(state), aggregation)


# ------------------------------------------------------------------------------ checks
def check_same_size(inputs: Sequence[TaskInput]) -> None:
    """:class:`CheckpointError` naming the keys and shapes where the tasks' backbones differ."""
    ref = inputs[0]
    for other in inputs[1:]:
        only_ref = [k for k in ref.backbone if k not in other.backbone]
        only_other = [k for k in other.backbone if k not in ref.backbone]
        shapes = [f"'{k}' is {tuple(v.shape)} in {ref.task} but {tuple(other.backbone[k].shape)} in {other.task}"
                  for k, v in ref.backbone.items() if k in other.backbone and v.shape != other.backbone[k].shape]
        problems = []
        if only_ref:
            problems.append(f"keys only in {ref.task} ({ref.path}): {few(only_ref)}")
        if only_other:
            problems.append(f"keys only in {other.task} ({other.path}): {few(only_other)}")
        if shapes:
            problems.append("shapes differ: " + "; ".join(shapes[:8]) + (" …" if len(shapes) > 8 else ""))
        if problems:
            raise CheckpointError(f"the {ref.task} and {other.task} backbones are not of one size "
                                  "(merge needs one subnet): " + ", ".join(problems))


def infer_arch(backbone: Mapping[str, Tensor], space: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(space name, architecture genes)`` of a plain ViT-MVT backbone state, from its shapes."""
    from search_spaces.vit_mvt import PRESETS, build_space
    from search_spaces.vit_mvt._genes import DEPTH, EMBED, heads_key, ratio_key

    embed = int(backbone["patch.weight"].shape[0])
    depth = len({k.split(".")[1] for k in backbone if k.startswith("blocks.")})
    genes: dict[str, Any] = {DEPTH: depth, EMBED: embed}
    for i in range(depth):
        genes[heads_key(i)] = int(backbone[f"blocks.{i}.rel.table"].shape[1])
        genes[ratio_key(i)] = backbone[f"blocks.{i}.fc1.weight"].shape[0] / embed
    rows = int(backbone["blocks.0.rel.table"].shape[0])
    names = [space] if space else list(PRESETS)
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown ViT-MVT space; expected one of {sorted(PRESETS)}", key="space", value=name)
        if (2 * PRESETS[name].grid - 1) ** 2 != rows:
            continue
        try:
            return name, build_space(name, ("x",), num_outputs={"x": 1}).canonical(genes)
        except ArchError:
            continue
    raise ArchError(f"a backbone of width {embed} and depth {depth} is not a subnet of the ViT-MVT space(s) "
                    f"{names}", key=EMBED, value=embed)


def read_decisions(sharing: str | os.PathLike[str] | Mapping[str, Any] | None, inputs: Sequence[TaskInput],
                   depth: int) -> dict[tuple[int, str, str], bool]:
    """Per (block, linear, task): True = the task uses the shared weight."""
    tasks = [i.task for i in inputs]
    if sharing is None:
        holders = [i for i in inputs if i.scores]
        if not holders:
            raise ConfigError("no sharing decisions: give a checkpoint with sharing scores or a subnet YAML "
                              "with share.<i>.<linear>.<task> genes", key="sharing")
        scores = holders[0].scores
        where = holders[0].path
    elif isinstance(sharing, Mapping) or str(sharing).endswith((".yaml", ".yml")):
        from automtl.mm.shared_backbone import read_genes

        genes = read_genes(sharing)
        return {(i, lin, t): genes.get(f"share.{i}.{lin}.{t}", "shared") == "shared"
                for i in range(depth) for lin in LINEAR_NAMES for t in tasks}
    else:
        scores, where = _scores(read_weights(sharing)), str(sharing)
    missing = [f"blocks.{i}.{lin}.score.{t}" for i in range(depth) for lin in LINEAR_NAMES for t in tasks
               if (i, lin, t) not in scores]
    if missing:
        raise CheckpointError(f"{where}: no sharing score for {few(missing)} (its scores cover tasks "
                              f"{sorted({k[2] for k in scores})})")
    return {k: scores[k] > 0.5 for k in ((i, lin, t) for i in range(depth) for lin in LINEAR_NAMES for t in tasks)}


# ------------------------------------------------------------------------------ merging
def combine(tensors: Sequence[Tensor]) -> Tensor:
    """The merged value of one tensor: the common value when all are equal, else their mean
    (floating point) or their largest (integer counters)."""
    first = tensors[0]
    if all(torch.equal(first, t) for t in tensors[1:]):
        return first.clone()
    if first.is_floating_point():
        return torch.stack([t.to(torch.float64) for t in tensors]).mean(0).to(first.dtype)
    return torch.stack(list(tensors)).max(0).values


def merge_backbones(backbones: Mapping[str, Mapping[str, Tensor]],
                    decisions: Mapping[tuple[int, str, str], bool]) -> dict[str, Tensor]:
    """The compact multi-task backbone state (``blocks.<i>.<linear>.<owner>.…``) of plain
    per-task backbone states, by the sharing ``decisions``."""
    tasks = list(backbones)
    ref = backbones[tasks[0]]
    out: dict[str, Tensor] = {}
    for key in ref:
        m = _LINEAR_KEY.match(key)
        if m is None:
            out[key] = combine([backbones[t][key] for t in tasks])
            continue
        i, lin, what = int(m[1]), m[2], m[3]
        sharers = [t for t in tasks if decisions[(i, lin, t)]]
        if sharers:
            out[f"blocks.{i}.{lin}.{SHARED_KEY}.{what}"] = combine([backbones[t][key] for t in sharers])
        for t in tasks:
            if t not in sharers:
                out[f"blocks.{i}.{lin}.{t}.{what}"] = backbones[t][key].clone()
    return out


def _task_view(merged: Mapping[str, Tensor], task: str, decisions: Mapping[tuple[int, str, str], bool],
               key: str) -> Tensor:
    m = _LINEAR_KEY.match(key)
    if m is None:
        return merged[key]
    owner = SHARED_KEY if decisions[(int(m[1]), m[2], task)] else task
    return merged[f"blocks.{m[1]}.{m[2]}.{owner}.{m[3]}"]


def _relative_change(own: Mapping[str, Tensor], merged: Mapping[str, Tensor], task: str,
                     decisions: Mapping[tuple[int, str, str], bool]) -> float:
    worst = 0.0
    for key, w in own.items():
        if not w.is_floating_point():
            continue
        diff = float((_task_view(merged, task, decisions, key).double() - w.double()).norm())
        worst = max(worst, diff / max(float(w.double().norm()), 1e-12))
    return worst


def _numel(state: Mapping[str, Tensor]) -> int:
    """Elements of the floating-point tensors (parameters and float buffers)."""
    return sum(v.numel() for v in state.values() if v.is_floating_point())


def merge_checkpoints(checkpoints: Mapping[str, str | os.PathLike[str]], out: str | os.PathLike[str], *,
                      sharing: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                      subnet: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                      space: str | None = None) -> MergeReport:
    """Merge ``{task: checkpoint}`` into one multi-task checkpoint at ``out`` (written
    atomically, with ``<out stem>.subnet.yaml`` next to it); returns the :class:`MergeReport`.

    ``sharing``: sharing scores (a checkpoint) or genes (YAML / dict); default the scores in
    the inputs. ``subnet``: the architecture to cut from supernet-form inputs (default: the
    sharing YAML's architecture genes)."""
    from automtl.mm.shared_backbone import read_genes
    from search_spaces.vit_mvt import save_subnet

    if len(checkpoints) < 2:
        raise ConfigError("merging needs checkpoints of at least two tasks", key="checkpoints",
                          value=dict(checkpoints))
    arch = read_genes(subnet) if subnet is not None else None
    if arch is None and sharing is not None and (isinstance(sharing, Mapping)
                                                 or str(sharing).endswith((".yaml", ".yml"))):
        arch = read_genes(sharing)
    states = {str(p): read_weights(p) for p in dict.fromkeys(str(p) for p in checkpoints.values())}
    inputs = [read_task(t, p, arch, state=states[str(p)]) for t, p in checkpoints.items()]
    check_same_size(inputs)
    space_name, arch_genes = infer_arch(inputs[0].backbone, space)
    depth = int(arch_genes["depth.0"])
    decisions = read_decisions(sharing, inputs, depth)
    backbones = {i.task: i.backbone for i in inputs}
    merged = merge_backbones(backbones, decisions)
    state = {f"backbone.{k}": v for k, v in merged.items()}
    for i in inputs:
        state.update({f"backbone.aggregation.{i.task}.{k}": v for k, v in i.aggregation.items()})
        state.update(i.heads)
    aggregation = {i.task: sorted({int(k.split(".")[0]) for k in i.aggregation}) for i in inputs if i.aggregation}
    genes = dict(arch_genes)
    genes.update({f"share.{i}.{lin}.{t}": "shared" if d else "specific" for (i, lin, t), d in decisions.items()})
    out = Path(out)
    yaml_path = out.with_name(out.stem + ".subnet.yaml")
    tasks = [i.task for i in inputs]
    n_shared = sum(1 for k in merged if k.endswith(f".{SHARED_KEY}.weight"))
    report = MergeReport(
        out=str(out), subnet_yaml=str(yaml_path), tasks=tasks, space=space_name,
        bytes_before=sum(os.path.getsize(i.path) for i in {i.path: i for i in inputs}.values()), bytes_after=0,
        params_before=sum(_numel(i.backbone) + _numel(i.aggregation) + _numel(i.heads) for i in inputs),
        params_after=_numel(state),
        backbone_params_before=sum(_numel(i.backbone) + _numel(i.aggregation) for i in inputs),
        backbone_params_after=_numel(merged) + sum(_numel(i.aggregation) for i in inputs),
        shared_linears=n_shared, specific_linears=sum(1 for d in decisions.values() if not d),
        max_relative_change={i.task: _relative_change(i.backbone, merged, i.task, decisions) for i in inputs},
        aggregation=aggregation)
    meta = {"merge": {"tasks": tasks, "space": space_name, "inputs": {i.task: i.path for i in inputs},
                      "aggregation": aggregation,
                      "rule": "shared linear = mean over the tasks sharing it; other backbone tensors = mean "
                              "over all tasks (exact when equal); heads kept per task"},
            "genes": genes}
    save_subnet(genes, yaml_path)
    atomic_save({"meta": meta, "state_dict": state}, out)
    report.bytes_after = out.stat().st_size
    return report


# ------------------------------------------------------------------------------ command line
def _pairs(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for v in values:
        task, sep, path = v.partition("=")
        if not sep or not task or not path:
            raise ConfigError("expected TASK=CHECKPOINT (e.g. det=work_dirs/det/iter_1000.pth)", key="checkpoints",
                              value=v)
        out[task] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``tools/merge_checkpoints.py``: merge, print the report (``--json`` for machines)."""
    import json

    ap = argparse.ArgumentParser(prog="tools/merge_checkpoints.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="TASK=CHECKPOINT, one per task (e.g. cls=a.pth det=b.pth)")
    ap.add_argument("-o", "--out", required=True, help="the merged checkpoint to write")
    ap.add_argument("--sharing", help="sharing scores (a checkpoint) or genes (subnet YAML); default: the "
                                      "scores found in the inputs")
    ap.add_argument("--subnet", help="subnet YAML to cut supernet-form inputs to")
    ap.add_argument("--space", help="ViT-MVT space (tiny, small, base); default: inferred from the shapes")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    try:
        report = merge_checkpoints(_pairs(args.checkpoints), args.out, sharing=args.sharing, subnet=args.subnet,
                                   space=args.space)
    except AutoMTLError as exc:  # one line naming what is wrong, exit status 2 (as every automtl tool)
        print(f"merge_checkpoints: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report), indent=2) if args.json else report.text())
    return 0
