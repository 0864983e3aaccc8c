"""Subnet files in the ViT-MVT YAML format (``depth.0``, ``embed_channels.0``,
``mlp_ratio.<i>``, ``num_heads.<i>``; sharing genes optional; spaces with MoE layers add
``ffn.<i>``, ``num_experts.<i>`` and ``top_k.<i>``).

Reading is strict: the file must be UTF-8, no mapping may give a key twice (plain YAML keeps
the last value silently) and, without a space to check against, every value must be in its
generic range (:func:`~search_spaces.vit_mvt._genes.check_bounds`)."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from automtl.errors import ArchError, ConfigError
from automtl.io import atomic_write_text

from ._genes import DEPTH, EMBED, check_bounds, experts_key, ffn_key, heads_key, ratio_key, topk_key

if TYPE_CHECKING:
    from ._space import ViTMVTSpace

_LAYER_GENE = re.compile(r"^(num_heads|mlp_ratio|ffn|num_experts|top_k)\.(\d+)$"
                         r"|^share\.(\d+)\.(qkv|proj|fc1|fc2)\.[^.]+$")


def _order(key: str) -> tuple[Any, ...]:
    """Natural order: global genes, then per-layer genes by name and layer number."""
    parts = key.split(".")
    return (key not in (DEPTH, EMBED), parts[0], *(int(p) if p.isdigit() else p for p in parts[1:]))


def _check_names(genes: Mapping[Any, Any], path: str) -> None:
    for key in genes:
        if not isinstance(key, str) or not (key in (DEPTH, EMBED) or _LAYER_GENE.match(key)):
            raise ArchError(f"unknown gene in {path}; expected depth.0, embed_channels.0, "
                            f"num_heads.<i>, mlp_ratio.<i>, ffn.<i>, num_experts.<i>, top_k.<i> "
                            f"or share.<i>.<linear>.<task>", key=str(key))
    for key in (DEPTH, EMBED):
        if key not in genes:
            raise ArchError(f"missing gene in {path}", key=key)


def _in_file(exc: ArchError, path: str) -> ArchError:
    """``exc`` with `` (in <path>)`` added to its message."""
    detail = str(exc)
    if exc.key is not None and detail.startswith(f"'{exc.key}': "):
        detail = detail[len(exc.key) + 4:]
    return ArchError(f"{detail} (in {path})", key=exc.key, value=exc.value)


def _check_values(genes: Mapping[str, Any], path: str) -> None:
    """Generic range of every gene, and per-layer genes for every layer below the depth."""
    for key, value in genes.items():
        try:
            check_bounds(key, value)
        except ArchError as exc:
            raise _in_file(exc, path) from exc
    for i in range(genes[DEPTH]):
        moe = genes.get(ffn_key(i)) == "moe"
        for key in (heads_key(i),) + ((experts_key(i), topk_key(i)) if moe else (ratio_key(i),)):
            if key not in genes:
                raise ArchError(f"missing gene in {path} (the depth is {genes[DEPTH]})", key=key)
        if moe and genes[topk_key(i)] > genes[experts_key(i)]:
            raise ArchError(f"top-k {genes[topk_key(i)]} is more than the {genes[experts_key(i)]} "
                            f"experts of layer {i} (in {path})", key=topk_key(i),
                            value=genes[topk_key(i)])


class _DuplicateKey(yaml.YAMLError):
    """A mapping key given twice (carries the key and both 1-based line numbers)."""

    def __init__(self, key: Any, first: int, second: int) -> None:
        self.key, self.first, self.second = key, first, second
        super().__init__(f"key {key!r} given twice, at lines {first} and {second}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML safe loader that refuses a mapping key given twice."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Check the keys of ``node`` for repeats, then build it as the safe loader does."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: the safe loader reports it
                continue
        return super().construct_mapping(node, deep=deep)


def _read_text(p: str) -> str:
    """The UTF-8 text of subnet file ``p``; :class:`ConfigError` naming it otherwise."""
    try:
        data = Path(p).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read subnet file: {exc.strerror or exc}", path=p) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text: byte {data[exc.start]:#04x} at line {line} "
                          f"({exc.reason})", path=p) from exc


def _parse_yaml(text: str, p: str) -> Any:
    """Parse ``text`` with :class:`_UniqueKeyLoader`; :class:`ConfigError` naming ``p``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except _DuplicateKey as exc:
        raise ConfigError(f"duplicated key at lines {exc.first} and {exc.second} (YAML would keep "
                          "only the last value)", key=str(exc.key), path=p) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}",
                          path=p) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an impossible date, absurd nesting
        raise ConfigError(f"not valid YAML: {exc}", path=p) from exc


def load_subnet(path: str | os.PathLike[str], space: ViTMVTSpace | None = None) -> dict[str, Any]:
    """Read a subnet YAML file into a candidate dict (validated against ``space`` if given).

    Values may be plain (``num_heads.0: 3``) or mmrazor-style (``num_heads.0: {chosen: 3}``).
    """
    p = str(path)
    data = _parse_yaml(_read_text(p), p)
    if not isinstance(data, dict):
        raise ConfigError(f"a subnet file must be a mapping of genes, got {type(data).__name__}",
                          path=p)
    genes = {k: (v["chosen"] if isinstance(v, dict) and "chosen" in v else v) for k, v in data.items()}
    _check_names(genes, p)
    if space is not None:
        try:
            return space.canonical(genes)
        except ArchError as exc:
            raise _in_file(exc, p) from exc
    _check_values(genes, p)
    return {k: genes[k] for k in sorted(genes, key=_order)}


def save_subnet(arch: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``arch`` as a subnet YAML file (atomically: no half-written file on error)."""
    p = Path(path)
    genes = dict(arch)
    _check_names(genes, str(p))
    _check_values(genes, str(p))
    clean = {}
    for k in sorted(genes, key=_order):
        v = genes[k]
        clean[k] = float(v) if k.startswith("mlp_ratio.") else (v if isinstance(v, str) else int(v))
    atomic_write_text(p, yaml.safe_dump(clean, sort_keys=False, default_flow_style=False))
