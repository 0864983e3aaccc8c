"""Gene names of a ViT-MVT candidate and their parsing/validation into an :class:`Arch`.

Architecture genes use the names of the released ViT-MVT subnet files (``depth.0``,
``embed_channels.0``, ``num_heads.<i>``, ``mlp_ratio.<i>``); sharing genes are
``share.<i>.<linear>.<task>`` with the value ``"shared"`` or ``"specific"``. Spaces with more
FFN kinds than the locality FFN add ``ffn.<i>`` (``dense`` / ``locality`` / ``moe``) and, for
an MoE layer, ``num_experts.<i>`` and ``top_k.<i>``; an MoE layer has no ``mlp_ratio.<i>`` (its
experts' width is the space's ``moe_mlp_ratio``) and no fc1/fc2 sharing genes (its experts
serve every task; the routers decide per task).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from automtl.errors import ArchError

from ._config import FFN_KINDS, LINEARS, SHARED, SPECIFIC, Arch, SpaceConfig

DEPTH = "depth.0"
EMBED = "embed_channels.0"
#: per-layer genes: (prefix, parts after the prefix) of every kind
_LAYER_PREFIXES = ("num_heads", "mlp_ratio", "share", "ffn", "num_experts", "top_k")
#: the FFN linears an MoE layer replaces (no sharing genes there)
FFN_LINEARS = ("fc1", "fc2")


def heads_key(i: int) -> str:
    """Gene naming the number of heads of layer ``i``."""
    return f"num_heads.{i}"


def ratio_key(i: int) -> str:
    """Gene naming the MLP ratio of layer ``i``."""
    return f"mlp_ratio.{i}"


def share_key(i: int, linear: str, task: str) -> str:
    """Gene saying whether ``task`` uses the shared ``linear`` of layer ``i``."""
    return f"share.{i}.{linear}.{task}"


def ffn_key(i: int) -> str:
    """Gene naming the FFN kind of layer ``i``."""
    return f"ffn.{i}"


def experts_key(i: int) -> str:
    """Gene naming the number of experts of MoE layer ``i``."""
    return f"num_experts.{i}"


def topk_key(i: int) -> str:
    """Gene naming how many experts each token of MoE layer ``i`` takes."""
    return f"top_k.{i}"


def gene_layer(key: str) -> int | None:
    """The layer a per-layer gene belongs to (``None`` for global genes or unparsable keys)."""
    parts = key.split(".")
    if parts[0] in _LAYER_PREFIXES and len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def layer_linears(kind: str) -> tuple[str, ...]:
    """The adaptive linears of a layer with FFN ``kind`` (the ones with sharing genes)."""
    return LINEARS if kind != "moe" else tuple(lin for lin in LINEARS if lin not in FFN_LINEARS)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_choice(key: str, value: Any, choices: Sequence[Any], *, integer: bool) -> None:
    ok = _is_int(value) if integer else _is_num(value)
    if not ok or value not in choices:
        raise ArchError(f"value {value!r} not in the choices {list(choices)}", key=key, value=value)


def check_bounds(key: str, value: Any) -> None:
    """Raise :class:`ArchError` if ``value`` is out of range for gene ``key`` in any space:
    positive integers for depth, width and heads, positive finite ratios, sharing strings."""
    if key in (DEPTH, EMBED) or key.startswith(("num_heads.", "num_experts.", "top_k.")):
        ok, wanted = _is_int(value) and value > 0, "a positive integer"
    elif key.startswith("mlp_ratio."):
        ok, wanted = _is_num(value) and math.isfinite(value) and value > 0, "a positive number"
    elif key.startswith("share."):
        ok, wanted = isinstance(value, str) and value in (SHARED, SPECIFIC), f"{SHARED!r} or {SPECIFIC!r}"
    elif key.startswith("ffn."):
        ok, wanted = isinstance(value, str) and value in FFN_KINDS, f"one of {list(FFN_KINDS)}"
    else:
        return
    if not ok:
        raise ArchError(f"value {value!r} out of range: must be {wanted}", key=key, value=value)


def check_key(key: Any, cfg: SpaceConfig, tasks: Sequence[str]) -> None:
    """Raise :class:`ArchError` if ``key`` is not a gene of the space."""
    if not isinstance(key, str):
        raise ArchError("gene names must be strings", key=str(key))
    if key in (DEPTH, EMBED):
        return
    parts = key.split(".")
    singles = ("num_heads", "mlp_ratio") + (("ffn", "num_experts", "top_k") if cfg.has_ffn_genes else ())
    known = (parts[0] in singles and len(parts) == 2) or (parts[0] == "share" and len(parts) == 4)
    if not known or not parts[1].isdigit():
        extra = ", ffn.<i>, num_experts.<i>, top_k.<i>" if cfg.has_ffn_genes else ""
        raise ArchError("unknown gene; expected depth.0, embed_channels.0, num_heads.<i>, "
                        f"mlp_ratio.<i>{extra} or share.<i>.<linear>.<task>", key=key)
    layer = int(parts[1])
    if layer >= cfg.max_depth:
        raise ArchError(f"layer {layer} is beyond the supernet depth {cfg.max_depth}", key=key)
    if parts[0] == "share":
        if parts[2] not in LINEARS:
            raise ArchError(f"unknown linear {parts[2]!r}; expected one of {list(LINEARS)}", key=key)
        if parts[3] not in tasks:
            raise ArchError(f"unknown task {parts[3]!r}; the space has {list(tasks)}", key=key)


def parse(candidate: Mapping[str, Any], cfg: SpaceConfig, tasks: Sequence[str]) -> Arch:
    """Validate ``candidate`` against the space and return the parsed :class:`Arch`.

    Genes of layers at or beyond the candidate's depth (but inside the supernet) are allowed
    and ignored; missing sharing genes mean ``"shared"``.
    """
    if not isinstance(candidate, Mapping):
        raise ArchError(f"a candidate must be a mapping of genes, got {type(candidate).__name__}")
    for key in candidate:
        check_key(key, cfg, tasks)
    for key in (DEPTH, EMBED):
        if key not in candidate:
            raise ArchError("missing gene", key=key)
    depth = candidate[DEPTH]
    if _is_int(depth) and depth > cfg.max_depth:
        raise ArchError(f"depth {depth} is beyond the supernet's maximum depth {cfg.max_depth}",
                        key=DEPTH, value=depth)
    _check_choice(DEPTH, depth, cfg.depths, integer=True)
    _check_choice(EMBED, candidate[EMBED], cfg.embeds, integer=True)
    sharing: dict[tuple[int, str, str], bool] = {}
    for key, value in candidate.items():
        if key.startswith("num_heads."):
            _check_choice(key, value, cfg.heads, integer=True)
        elif key.startswith("mlp_ratio."):
            _check_choice(key, value, cfg.mlp_ratios, integer=False)
        elif key.startswith("num_experts."):
            _check_choice(key, value, cfg.num_experts, integer=True)
        elif key.startswith("top_k."):
            _check_choice(key, value, cfg.top_ks, integer=True)
        elif key.startswith("ffn."):
            choices = cfg.layer_kinds(int(key.split(".")[1]))
            if not isinstance(value, str) or value not in choices:
                raise ArchError(f"value {value!r} not in the choices {list(choices)}", key=key,
                                value=value)
        elif key.startswith("share."):
            if value not in (SHARED, SPECIFIC):
                raise ArchError(f"value {value!r} not in the choices {[SHARED, SPECIFIC]}",
                                key=key, value=value)
            _, layer, linear, task = key.split(".")
            if int(layer) < depth:
                sharing[(int(layer), linear, task)] = value == SHARED
    kinds = _kinds(candidate, cfg, depth)
    experts, top_k = [], []
    for i in range(depth):
        if kinds[i] == "moe":
            for key in (experts_key(i), topk_key(i)):
                if key not in candidate:
                    raise ArchError(f"missing gene (layer {i} is an MoE layer)", key=key)
            n, k = int(candidate[experts_key(i)]), int(candidate[topk_key(i)])
            if k > n:
                raise ArchError(f"top-k {k} is more than the {n} experts of layer {i} "
                                f"(num_experts.{i})", key=topk_key(i), value=k)
            experts.append(n)
            top_k.append(k)
        else:
            experts.append(0)
            top_k.append(0)
        needed = (heads_key(i),) if kinds[i] == "moe" else (heads_key(i), ratio_key(i))
        for key in needed:
            if key not in candidate:
                raise ArchError(f"missing gene (the depth is {depth})", key=key)
    ratios = tuple(cfg.moe_mlp_ratio if kinds[i] == "moe" else float(candidate[ratio_key(i)])
                   for i in range(depth))
    if cfg.has_ffn_genes:
        sharing = {k: v for k, v in sharing.items() if k[1] in layer_linears(kinds[k[0]])}
    return Arch(embed=int(candidate[EMBED]), depth=int(depth),
                heads=tuple(int(candidate[heads_key(i)]) for i in range(depth)),
                ratios=ratios, sharing=sharing,
                ffn=tuple(kinds) if cfg.has_ffn_genes else (),
                experts=tuple(experts) if cfg.has_ffn_genes else (),
                top_k=tuple(top_k) if cfg.has_ffn_genes else ())


def _kinds(candidate: Mapping[str, Any], cfg: SpaceConfig, depth: int) -> list[str]:
    """The FFN kind of each layer below ``depth`` (``ffn.<i>`` required in spaces that have it)."""
    if not cfg.has_ffn_genes:
        return ["locality"] * depth
    kinds = []
    for i in range(depth):
        if ffn_key(i) not in candidate:
            raise ArchError(f"missing gene (the depth is {depth}); one of "
                            f"{list(cfg.layer_kinds(i))}", key=ffn_key(i))
        kinds.append(str(candidate[ffn_key(i)]))
    return kinds


def to_genes(arch: Arch, tasks: Sequence[str]) -> dict[str, Any]:
    """The canonical gene dict of ``arch`` (sharing genes only for more than one task)."""
    genes: dict[str, Any] = {DEPTH: arch.depth, EMBED: arch.embed}
    for i in range(arch.depth):
        kind = arch.kind(i)
        genes[heads_key(i)] = arch.heads[i]
        if kind != "moe":
            genes[ratio_key(i)] = arch.ratios[i]
        if arch.ffn:
            genes[ffn_key(i)] = kind
        if kind == "moe":
            genes[experts_key(i)] = arch.experts[i]
            genes[topk_key(i)] = arch.top_k[i]
        if len(tasks) > 1:
            for lin in layer_linears(kind):
                for t in tasks:
                    genes[share_key(i, lin, t)] = SHARED if arch.shared(i, lin, t) else SPECIFIC
    return dict(sorted(genes.items()))
