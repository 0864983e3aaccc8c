"""Subnet files in the ViT-MVT YAML format (``depth.0``, ``embed_channels.0``,
``mlp_ratio.<i>``, ``num_heads.<i>``; sharing genes optional)."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from automtl.errors import ArchError, ConfigError
from automtl.io import atomic_write_text

from ._genes import DEPTH, EMBED

if TYPE_CHECKING:
    from ._space import ViTMVTSpace

_LAYER_GENE = re.compile(r"^(num_heads|mlp_ratio)\.(\d+)$|^share\.(\d+)\.(qkv|proj|fc1|fc2)\.[^.]+$")


def _order(key: str) -> tuple[Any, ...]:
    """Natural order: global genes, then per-layer genes by name and layer number."""
    parts = key.split(".")
    return (key not in (DEPTH, EMBED), parts[0], *(int(p) if p.isdigit() else p for p in parts[1:]))


def _check_names(genes: Mapping[Any, Any], path: str) -> None:
    for key in genes:
        if not isinstance(key, str) or not (key in (DEPTH, EMBED) or _LAYER_GENE.match(key)):
            raise ArchError(f"unknown gene in {path}; expected depth.0, embed_channels.0, "
                            f"num_heads.<i>, mlp_ratio.<i> or share.<i>.<linear>.<task>", key=str(key))
    for key in (DEPTH, EMBED):
        if key not in genes:
            raise ArchError(f"missing gene in {path}", key=key)


def load_subnet(path: str | os.PathLike[str], space: ViTMVTSpace | None = None) -> dict[str, Any]:
    """Read a subnet YAML file into a candidate dict (validated against ``space`` if given).

    Values may be plain (``num_heads.0: 3``) or mmrazor-style (``num_heads.0: {chosen: 3}``).
    """
    p = str(path)
    try:
        text = Path(p).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read subnet file: {exc.strerror or exc}", path=p) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}",
                          path=p) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"a subnet file must be a mapping of genes, got {type(data).__name__}",
                          path=p)
    genes = {k: (v["chosen"] if isinstance(v, dict) and "chosen" in v else v) for k, v in data.items()}
    _check_names(genes, p)
    if space is not None:
        try:
            return space.canonical(genes)
        except ArchError as exc:
            detail = str(exc)
            if exc.key is not None and detail.startswith(f"'{exc.key}': "):
                detail = detail[len(exc.key) + 4:]
            raise ArchError(f"{detail} (in {p})", key=exc.key, value=exc.value) from exc
    return {k: genes[k] for k in sorted(genes, key=_order)}


def save_subnet(arch: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``arch`` as a subnet YAML file (atomically: no half-written file on error)."""
    p = Path(path)
    genes = dict(arch)
    _check_names(genes, str(p))
    clean = {}
    for k in sorted(genes, key=_order):
        v = genes[k]
        clean[k] = float(v) if k.startswith("mlp_ratio.") else (v if isinstance(v, str) else int(v))
    atomic_write_text(p, yaml.safe_dump(clean, sort_keys=False, default_flow_style=False))
