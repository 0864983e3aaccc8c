"""Searched networks as OpenMMLab backbones (mmpretrain, mmdet and mmseg at once).

- :class:`ViTMVTSupernetBackbone`: the weight-entangled ViT-MVT supernet with one arch set,
  serving one task (e.g. to fine-tune a supernet's subnet without exporting it);
- :class:`ViTMVTSubnetBackbone`: a plain ViT-MVT subnet built from a subnet YAML (the layout
  :func:`search_spaces.vit_mvt.export_subnet` produces), with the conv aggregation blocks that
  ViT-MVT adds for detection;
- :class:`AutoMTLBranchedBackbone`: one task's path through an AutoMTL branched model
  (``MTLModel(backbone, …).compile(policy)``), returning the maps at the requested strides.

Each returns a tuple of (B, C, h, w) maps, as mm necks and heads expect. Pretrained weights
(``init_cfg=dict(type="Pretrained", checkpoint=PATH[, prefix=…])``) are read weights-only
(:func:`automtl.io.safe_load`) and must fit: a checkpoint of another size is refused with a
:class:`~automtl.errors.CheckpointError` naming the keys and shapes that differ. Modules that
report auxiliary losses (``auxiliary_losses()``, e.g. mixture-of-experts layers) stay
sub-modules of the wrappers unchanged, so whoever collects them from ``model.modules()`` finds
them once.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from automtl.errors import ArchError, CheckpointError, ConfigError
from automtl.io import check_state_dict, few
from automtl.mm.safe_load import read_weights
from automtl.mm.scopes import register_mm

#: layers after which ViT-MVT's detection networks add a conv aggregation block (DESIGN of the
#: released code: T/S after {2, 5, 9, 13}, B after {3, 7, 11, 15})
RELEASED_AGGREGATION: dict[str, tuple[int, ...]] = {
    "tiny": (2, 5, 9, 13), "small": (2, 5, 9, 13), "base": (3, 7, 11, 15)}

InitCfg = dict | list[dict] | None


# ------------------------------------------------------------------------------ pretrained weights
def _pretrained_cfg(init_cfg: InitCfg) -> dict | None:
    """The ``Pretrained`` entry of an mmengine ``init_cfg`` (None when there is none)."""
    entries = init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("type") == "Pretrained":
            if not entry.get("checkpoint"):
                raise ConfigError("a Pretrained init_cfg needs checkpoint=PATH", key="backbone.init_cfg",
                                  value=dict(entry))
            return dict(entry)
    return None


def _read_pretrained(module: BaseModule, label: str) -> tuple[dict[str, Tensor], dict[str, Any], str] | None:
    """The weights of ``module``'s ``Pretrained`` init_cfg, that config and a ``where`` naming the
    file and the module for error messages; None without one (then mmengine's own init runs)."""
    pre = _pretrained_cfg(module.init_cfg)
    if pre is None:
        return None
    return read_weights(pre["checkpoint"]), pre, f"{pre['checkpoint']} -> {type(module).__name__}({label})"


def _strip(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def fit_prefix(state: Mapping[str, Tensor], own: Sequence[str], prefixes: Sequence[str],
               where: str) -> dict[str, Tensor]:
    """``state`` with the one of ``prefixes`` stripped under which most keys match ``own``."""
    own_set = set(own)
    best = max(prefixes, key=lambda p: sum(k in own_set for k in _strip(state, p)))
    out = _strip(state, best)
    if not any(k in own_set for k in out):
        raise CheckpointError(f"{where}: no tensor fits the model; the checkpoint has keys "
                              f"{few(list(state))}, the model expects {few(list(own))}")
    return out


def load_checked(module: nn.Module, state: Mapping[str, Tensor], where: str, *,
                 may_miss: Sequence[str] = (), may_ignore: Sequence[str] = ()) -> None:
    """Load ``state`` into ``module`` after checking it fits (names missing, unexpected and
    differently shaped tensors); keys starting with ``may_miss`` may be absent (they keep
    their initial values), checkpoint keys starting with ``may_ignore`` are dropped."""
    own = module.state_dict()
    saved = {k: v for k, v in state.items() if not k.startswith(tuple(may_ignore)) or k in own}
    expected = {k: v for k, v in own.items() if k in saved or not k.startswith(tuple(may_miss))}
    check_state_dict(expected, saved, where, hint=" (is it a network of another size?)")
    with torch.no_grad():
        for k, v in saved.items():
            own[k].copy_(v)


# ------------------------------------------------------------------------------ ViT-MVT parts
def _space(size: str, tasks: Sequence[str] = ("cls",), num_outputs: Mapping[str, int] | None = None) -> Any:
    from search_spaces.vit_mvt import PRESETS, build_space

    if size not in PRESETS:
        raise ConfigError(f"unknown ViT-MVT size; expected one of {sorted(PRESETS)}", key="backbone.size",
                          value=size)
    return build_space(size, tasks=tuple(tasks), num_outputs=num_outputs)


def _genes(arch: Any, space: Any, *, keep_sharing: bool) -> dict[str, Any]:
    """The genes of ``arch`` (a subnet YAML path or a gene dict), checked against ``space``.

    Sharing genes are dropped unless ``keep_sharing`` (a single-task network has none)."""
    from search_spaces.vit_mvt import load_subnet

    where = ""
    if isinstance(arch, (str, os.PathLike)):
        where = f" (in {arch})"
        genes = load_subnet(arch)
    elif isinstance(arch, Mapping):
        genes = {k: (v["chosen"] if isinstance(v, Mapping) and "chosen" in v else v) for k, v in arch.items()}
    else:
        raise ConfigError("must be a subnet YAML path or a dict of genes", key="backbone.arch",
                          value=arch)
    if not keep_sharing:
        genes = {k: v for k, v in genes.items() if not str(k).startswith("share.")}
    try:
        return space.canonical(genes)
    except ArchError as exc:
        detail = str(exc)
        if exc.key is not None and detail.startswith(f"'{exc.key}': "):
            detail = detail[len(exc.key) + 4:]
        raise ArchError(f"{detail}: the subnet{where} is not in the ViT-MVT-{space.cfg.name} space",
                        key=exc.key, value=exc.value) from exc


def _layer_norm_map(m: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """LayerNorm over the channels of a (B, C, h, w) map (ViT-MVT's final norm)."""
    from search_spaces.vit_mvt._ops import LN_EPS

    y = F.layer_norm(m.permute(0, 2, 3, 1), (m.shape[1],), weight, bias, LN_EPS)
    return y.permute(0, 3, 1, 2)


class ConvAggregation(nn.Module):
    """ViT-MVT's conv aggregation block for detection: two 3×3 convolutions with BatchNorm
    (ReLU between), added to the token map; the last BatchNorm starts at zero, so a fresh
    block is the identity and a classification checkpoint still computes what it did."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)

    def forward(self, m: Tensor) -> Tensor:
        return m + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(m)))))


def _init_vit(module: nn.Module) -> None:
    """The supernet's initialisation (truncated normal 0.02 for linears, depthwise convs,
    position and relative-position tables; zero biases), so a subnet trained from scratch
    starts as the supernet's subnets do."""
    from search_spaces.vit_mvt._plain import PosEmbed, RelPosBias

    for m in module.modules():
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, PosEmbed):
            nn.init.trunc_normal_(m.weight, std=0.02)
        elif isinstance(m, RelPosBias):
            nn.init.trunc_normal_(m.table, std=0.02)


@register_mm()
class ViTMVTSubnetBackbone(BaseModule):
    """A plain ViT-MVT subnet (fixed widths) from a subnet YAML, as an OpenMMLab backbone.

    Its parameters are named as in :func:`search_spaces.vit_mvt.export_subnet`'s task
    networks (``stem``, ``patch``, ``pos``, ``blocks``, ``norm``), so an exported network's
    state dict loads as it is (its ``head`` is ignored).

    Args:
        subnet: a subnet YAML path (``configs/nas/vit_mvt_<size>/subnet.yaml``) or a gene dict.
        size: the space the subnet must belong to: ``"tiny"``, ``"small"`` or ``"base"``.
        out_indices: blocks whose output maps are returned (negative counts from the end).
        final_norm: apply the final LayerNorm to the last block's map (ViT-MVT's heads read it).
        conv_aggregation: ``True`` adds ViT-MVT's detection blocks after the released layers
            (:data:`RELEASED_AGGREGATION`), a sequence adds them after those blocks, ``False`` none.
        img_size: image side the position embedding is laid out for (default: the space's 224;
            other inputs resize it bicubically).
        drop_path_rate: stochastic depth, growing linearly to this rate at the last block.
        init_cfg: mmengine ``init_cfg``; ``Pretrained`` loads an exported network or an mm
            checkpoint (``prefix`` optional; missing aggregation blocks start as identity).
    """

    def __init__(self, subnet: str | os.PathLike[str] | Mapping[str, Any], size: str = "tiny",
                 out_indices: Sequence[int] = (-1,), final_norm: bool = False,
                 conv_aggregation: bool | Sequence[int] = False, img_size: int | None = None,
                 drop_path_rate: float = 0.0, init_cfg: InitCfg = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from search_spaces.vit_mvt._config import PATCH, STEM_CHANNELS, STRIDE
        from search_spaces.vit_mvt._plain import Block, PosEmbed, Stem, resolve_indices

        space = _space(size)
        genes = _genes(subnet, space, keep_sharing=False)
        arch = space.parse(genes)
        if arch.moe_layers():
            raise ConfigError(f"the subnet has mixture-of-experts layers {arch.moe_layers()}; a plain subnet "
                              "backbone builds locality / dense FFNs only: use ViTMVTSupernetBackbone",
                              key="backbone.subnet")
        if conv_aggregation is True and size not in RELEASED_AGGREGATION:
            raise ConfigError(f"ViT-MVT released aggregation layers exist for {sorted(RELEASED_AGGREGATION)}; "
                              "give the layers as a list", key="backbone.conv_aggregation", value=size)
        self.size, self.arch_genes = size, genes
        self.embed_dims, self.depth = arch.embed, arch.depth
        self.out_indices = tuple(resolve_indices(out_indices, arch.depth))
        self.final_norm = bool(final_norm)
        grid = (img_size or space.cfg.img_size) // STRIDE
        if grid < 1:
            raise ConfigError(f"must be at least {STRIDE}", key="backbone.img_size", value=img_size)
        self.stem = Stem()
        self.patch = nn.Conv2d(STEM_CHANNELS, arch.embed, PATCH, PATCH)
        nn.init.kaiming_normal_(self.patch.weight, mode="fan_out")
        nn.init.zeros_(self.patch.bias)  # type: ignore[arg-type]
        self.pos = PosEmbed(arch.embed, grid)
        rates = [drop_path_rate * i / max(arch.depth - 1, 1) for i in range(arch.depth)]
        self.blocks = nn.ModuleList(Block.new(arch.embed, h, hid, space.cfg.grid, rate, ffn=arch.kind(i))
                                    for i, (h, hid, rate) in enumerate(zip(arch.heads, arch.hidden, rates)))
        from search_spaces.vit_mvt._ops import LN_EPS

        self.norm = nn.LayerNorm(arch.embed, eps=LN_EPS)
        agg = RELEASED_AGGREGATION[size] if conv_aggregation is True else (conv_aggregation or ())
        agg = tuple(resolve_indices(agg, arch.depth))
        self.aggregation = nn.ModuleDict({str(i): ConvAggregation(arch.embed) for i in agg})
        _init_vit(self)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of every returned map (the embedding width)."""
        return (self.embed_dims,) * len(self.out_indices)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Maps (B, E, H/16, W/16) after the blocks of ``out_indices``."""
        from search_spaces.vit_mvt import _ops as O

        t, hw = O.patch_embed(self.stem(x), self.patch.weight, self.patch.bias, self.pos.weight)
        last = self.depth - 1
        maps: dict[int, Tensor] = {}
        for i, blk in enumerate(self.blocks):
            t = blk(t, hw)
            agg = self.aggregation[str(i)] if str(i) in self.aggregation else None
            if agg is not None:
                t = O.map_to_tokens(agg(O.tokens_to_map(t, hw)))
            if i in self.out_indices:
                if i == last and self.final_norm:
                    maps[i] = O.tokens_to_map(self.norm(t), hw)
                else:
                    maps[i] = O.tokens_to_map(t, hw)
        return tuple(maps[i] for i in self.out_indices)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s ``Pretrained`` checkpoint (checked), or mmengine's own init."""
        loaded = _read_pretrained(self, f"size={self.size!r}")
        if loaded is None:
            super().init_weights()
            return
        state, pre, where = loaded
        own = list(self.state_dict())
        prefixes = [pre["prefix"]] if pre.get("prefix") else ["", "backbone.", "module.backbone.", "module."]
        state = fit_prefix(state, own, prefixes, where)
        load_checked(self, state, where, may_miss=("aggregation.",), may_ignore=("head.",))
        self._is_init = True


@register_mm()
class ViTMVTSupernetBackbone(BaseModule):
    """The ViT-MVT supernet with one architecture active, serving one task, as an mm backbone.

    Args:
        size: ``"tiny"``, ``"small"`` or ``"base"``.
        arch: the active subnet: a subnet YAML path or gene dict (sharing genes allowed when
            ``tasks`` has several tasks); default the space's largest.
        task: the task whose path (and sharing decisions) the backbone runs.
        tasks: the supernet's tasks (default ``(task,)``); a checkpoint of a multi-task supernet
            needs the same list. ``num_outputs``: sizes of their (unused here) heads.
        out_indices, final_norm, drop_path_rate: as :class:`ViTMVTSubnetBackbone`.
        init_cfg: ``Pretrained`` loads a supernet state dict (e.g. ``tools/train.py``'s supernet
            checkpoint) or an mm checkpoint of this backbone.
    """

    def __init__(self, size: str = "tiny", arch: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 task: str = "cls", tasks: Sequence[str] | None = None,
                 num_outputs: Mapping[str, int] | None = None, out_indices: Sequence[int] = (-1,),
                 final_norm: bool = False, drop_path_rate: float = 0.0, init_cfg: InitCfg = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from search_spaces.vit_mvt import build_supernet
        from search_spaces.vit_mvt._plain import resolve_indices

        tasks = tuple(tasks) if tasks is not None else (task,)
        if task not in tasks:
            raise ConfigError(f"task {task!r} is not one of the supernet's tasks {list(tasks)}",
                              key="backbone.task", value=task)
        space = _space(size, tasks, num_outputs)
        self.size, self.task = size, task
        self.supernet = build_supernet(space, drop_path_rate=drop_path_rate, out_indices=tuple(out_indices))
        if arch is not None:
            self.supernet.set_arch(_genes(arch, space, keep_sharing=space.multi))
        self.out_indices = tuple(resolve_indices(out_indices, self.supernet.arch.depth))
        self.final_norm = bool(final_norm)

    def set_arch(self, arch: Mapping[str, Any]) -> None:
        """Activate another subnet (checked against the space)."""
        self.supernet.set_arch(_genes(arch, self.supernet.space, keep_sharing=self.supernet.space.multi))
        from search_spaces.vit_mvt._plain import resolve_indices

        self.out_indices = tuple(resolve_indices(self.out_indices, self.supernet.arch.depth))

    @property
    def embed_dims(self) -> int:
        """Embedding width of the active subnet."""
        return int(self.supernet.arch.embed)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of every returned map."""
        return (self.embed_dims,) * len(self.out_indices)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Maps (B, E, H/16, W/16) of the active subnet after the blocks of ``out_indices``."""
        maps = self.supernet.forward_features(x, self.task, self.out_indices)
        if self.final_norm and self.out_indices[-1] == self.supernet.arch.depth - 1:
            e = self.embed_dims
            maps[-1] = _layer_norm_map(maps[-1], self.supernet.norm_w[:e], self.supernet.norm_b[:e])
        return tuple(maps)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s ``Pretrained`` supernet checkpoint (checked), or mmengine's init."""
        loaded = _read_pretrained(self, f"size={self.size!r}")
        if loaded is None:
            super().init_weights()
            return
        state, pre, where = loaded
        own = list(self.supernet.state_dict())
        prefixes = ([pre["prefix"]] if pre.get("prefix") else
                    ["", "supernet.", "backbone.supernet.", "module.backbone.supernet.", "module.", "net."])
        load_checked(self.supernet, fit_prefix(state, own, prefixes, where), where)
        self._is_init = True


# ------------------------------------------------------------------------------ AutoMTL branched
class _Collect(nn.Module):
    """Head of the compiled one-task model: returns the backbone maps it is given, as a tuple."""

    def forward(self, *maps: Tensor) -> tuple[Tensor, ...]:
        return maps


def stage_outputs(model: Any) -> list[tuple[str, int, int]]:
    """``(node, stride, channels)`` per stride level of an :class:`~automtl.MTLModel`'s backbone:
    the last 4-D value (in execution order) at each stride, strides ascending."""
    graph, spec = model.graph, model.spec
    in_shape = graph[spec.input].shape
    if in_shape is None or len(in_shape) != 4:
        raise ConfigError("the backbone graph needs a 4-D input shape to find its strides",
                          key="backbone.input_shape", value=in_shape)
    last: dict[int, tuple[str, int]] = {}
    for item in spec.items:
        if item.kind == "input":
            continue
        name = item.unit.out if item.unit is not None else item.name
        shape = graph[name].shape
        if shape is None or len(shape) != 4 or shape[2] < 1:
            continue
        stride = max(1, round(in_shape[2] / shape[2]))
        last[stride] = (name, int(shape[1]))
    return [(name, s, c) for s, (name, c) in sorted(last.items())]


@register_mm()
class AutoMTLBranchedBackbone(BaseModule):
    """One task's path through an AutoMTL branched model, returning maps at several strides.

    The backbone (any form :func:`automtl.backbones.build_backbone` takes, e.g.
    ``"torchvision:resnet34"`` or ``"prototxt/deeplab_resnet34.prototxt"``) becomes an
    :class:`~automtl.MTLModel` over the policy's tasks; ``policy`` fixes every layer's choice;
    only the layers ``task`` runs are kept (its compiled branch).

    Args:
        backbone: the backbone spec.
        policy: a policy JSON path (``Policy.save``) or its dict.
        task: the task whose branch is returned (one of the policy's tasks).
        out_indices: indices into the stride levels (``stage_strides``: every stride at which
            the backbone has a map, ascending; negative counts from the end). Each level's map
            is its last value at that stride.
        input_shape: (N, C, H, W) used to trace an ``nn.Module`` backbone (or to override a
            prototxt's declared shape); strides are measured at it.
        bn_per_task: the ``MTLModel`` setting the policy (and weights) were trained with.
        init_cfg: ``Pretrained`` loads an ``MTLModel`` checkpoint (``Trainer.save_weights``;
            the policy picks the branch) or an mm checkpoint of this backbone.
    """

    def __init__(self, backbone: Any, policy: str | os.PathLike[str] | Mapping[str, Any], task: str,
                 out_indices: Sequence[int] = (-1,), input_shape: Sequence[int] | None = None,
                 bn_per_task: bool = True, init_cfg: InitCfg = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self._spec = dict(backbone=backbone, policy=policy, task=task, input_shape=input_shape,
                          bn_per_task=bn_per_task)
        model, pol = self._supernet()
        if task not in model.tasks:
            raise ConfigError(f"task {task!r} is not one of the policy's tasks {list(model.tasks)}",
                              key="backbone.task", value=task)
        levels = stage_outputs(model)
        n = len(levels)
        picked = []
        for i in out_indices:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise ConfigError(f"out index {i} outside the {n} stride levels "
                                  f"{[s for _, s, _ in levels]} of the backbone", key="backbone.out_indices",
                                  value=tuple(out_indices))
            picked.append(levels[j])
        self.task = task
        self.stage_strides = tuple(s for _, s, _ in levels)
        self.out_indices = tuple(int(i) for i in out_indices)
        self.out_strides = tuple(s for _, s, _ in picked)
        self.out_channels = tuple(c for _, _, c in picked)
        self._nodes = [name for name, _, _ in picked]
        self.branched = self._compile(model, pol)

    def _supernet(self) -> tuple[Any, Any]:
        """A fresh ``MTLModel`` over the policy's tasks (identity heads) and the policy."""
        from automtl.backbones import build_backbone
        from automtl.supernet import MTLModel, Policy

        spec = self._spec
        pol_src = spec["policy"]
        if isinstance(pol_src, (str, os.PathLike)):
            pol = Policy.load(pol_src)
        elif isinstance(pol_src, Mapping):
            pol = Policy.from_dict(pol_src, source="backbone.policy")
        else:
            raise ConfigError("must be a policy JSON path or its dict", key="backbone.policy", value=pol_src)
        net = build_backbone(spec["backbone"], key="backbone.backbone")
        model = MTLModel(net, {t: nn.Identity() for t in pol.tasks}, bn_per_task=spec["bn_per_task"],
                         input_shape=spec["input_shape"])
        pol.validate(model)
        return model, pol

    def _compile(self, model: Any, pol: Any) -> nn.Module:
        """The branched model of ``task`` alone, its outputs the chosen stride levels."""
        from automtl.supernet import BranchedModel
        from automtl.supernet._plan import build_program, inplace_relu_steps

        spec = dataclasses.replace(model.spec, outputs=list(self._nodes))
        units = spec.units
        row = pol.task_choices(self.task)
        prog = build_program(spec, [self.task], choice=lambda i, t: row[units[i].name],
                             share_owner=lambda i, t: t if units[i].norm_per_task else "",
                             proj_owner=lambda i, t: t if units[i].proj_norm_per_task else "")
        prog = prog.prune([self.task])
        modules = [model.module_of(s.ref) for s in prog.steps]
        relu = nn.ReLU(inplace=True)
        modules = [relu if ok else m for m, ok in zip(modules, inplace_relu_steps(prog, modules))]
        return BranchedModel.build(prog, modules, {self.task: _Collect()}, pol)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """The task's maps at ``out_strides``."""
        return tuple(self.branched(x)[self.task])

    def init_weights(self) -> None:
        """Load ``init_cfg``'s ``Pretrained`` checkpoint (checked), or mmengine's own init."""
        loaded = _read_pretrained(self, f"task={self.task!r}")
        if loaded is None:
            super().init_weights()
            return
        state, pre, where = loaded
        model, pol = self._supernet()
        if not pre.get("prefix") and any(k.startswith("units.") for k in state) and "logits" in state:
            load_checked(model, state, where, may_ignore=("heads.",))  # an MTLModel checkpoint
            fresh = self._compile(model, pol)
            self.branched.load_state_dict(fresh.state_dict())
        else:
            own = list(self.branched.state_dict())
            prefixes = ([pre["prefix"]] if pre.get("prefix") else
                        ["", "branched.", "backbone.branched.", "module.backbone.branched."])
            load_checked(self.branched, fit_prefix(state, own, prefixes, where), where)
        self._is_init = True
