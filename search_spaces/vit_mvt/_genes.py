"""Gene names of a ViT-MVT candidate and their parsing/validation into an :class:`Arch`.

Architecture genes use the names of the released ViT-MVT subnet files (``depth.0``,
``embed_channels.0``, ``num_heads.<i>``, ``mlp_ratio.<i>``); sharing genes are
``share.<i>.<linear>.<task>`` with the value ``"shared"`` or ``"specific"``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from automtl.errors import ArchError

from ._config import LINEARS, SHARED, SPECIFIC, Arch, SpaceConfig

DEPTH = "depth.0"
EMBED = "embed_channels.0"


def heads_key(i: int) -> str:
    """Gene naming the number of heads of layer ``i``."""
    return f"num_heads.{i}"


def ratio_key(i: int) -> str:
    """Gene naming the MLP ratio of layer ``i``."""
    return f"mlp_ratio.{i}"


def share_key(i: int, linear: str, task: str) -> str:
    """Gene saying whether ``task`` uses the shared ``linear`` of layer ``i``."""
    return f"share.{i}.{linear}.{task}"


def gene_layer(key: str) -> int | None:
    """The layer a per-layer gene belongs to (``None`` for global genes or unparsable keys)."""
    parts = key.split(".")
    if parts[0] in ("num_heads", "mlp_ratio", "share") and len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


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
    if key in (DEPTH, EMBED) or key.startswith("num_heads."):
        ok, wanted = _is_int(value) and value > 0, "a positive integer"
    elif key.startswith("mlp_ratio."):
        ok, wanted = _is_num(value) and math.isfinite(value) and value > 0, "a positive number"
    elif key.startswith("share."):
        ok, wanted = isinstance(value, str) and value in (SHARED, SPECIFIC), f"{SHARED!r} or {SPECIFIC!r}"
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
    known = (parts[0] in ("num_heads", "mlp_ratio") and len(parts) == 2) or (
        parts[0] == "share" and len(parts) == 4)
    if not known or not parts[1].isdigit():
        raise ArchError("unknown gene; expected depth.0, embed_channels.0, num_heads.<i>, "
                        "mlp_ratio.<i> or share.<i>.<linear>.<task>", key=key)
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
        elif key.startswith("share."):
            if value not in (SHARED, SPECIFIC):
                raise ArchError(f"value {value!r} not in the choices {[SHARED, SPECIFIC]}",
                                key=key, value=value)
            _, layer, linear, task = key.split(".")
            if int(layer) < depth:
                sharing[(int(layer), linear, task)] = value == SHARED
    for i in range(depth):
        for key in (heads_key(i), ratio_key(i)):
            if key not in candidate:
                raise ArchError(f"missing gene (the depth is {depth})", key=key)
    return Arch(embed=int(candidate[EMBED]), depth=int(depth),
                heads=tuple(int(candidate[heads_key(i)]) for i in range(depth)),
                ratios=tuple(float(candidate[ratio_key(i)]) for i in range(depth)),
                sharing=sharing)


def to_genes(arch: Arch, tasks: Sequence[str]) -> dict[str, Any]:
    """The canonical gene dict of ``arch`` (sharing genes only for more than one task)."""
    genes: dict[str, Any] = {DEPTH: arch.depth, EMBED: arch.embed}
    for i in range(arch.depth):
        genes[heads_key(i)] = arch.heads[i]
        genes[ratio_key(i)] = arch.ratios[i]
        if len(tasks) > 1:
            for lin in LINEARS:
                for t in tasks:
                    genes[share_key(i, lin, t)] = SHARED if arch.shared(i, lin, t) else SPECIFIC
    return dict(sorted(genes.items()))
