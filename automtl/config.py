"""The config front door: one loader for every config, one validator for every section.

Configs are mmengine ``.py`` files (``_base_`` inheritance, ``custom_imports`` to register a
user's own parts, ``--cfg-options a.b=1`` overrides). :func:`load_config` reads one;
:func:`config_kind` says which runner it needs (``automtl`` three-phase training,
``supernet`` one-shot supernet training, ``search``); :func:`validate` checks one section
against its schema — a pydantic model that lives next to the code that uses the section, so
each section has one schema and one set of defaults — and turns every problem into a
:class:`~automtl.errors.ConfigError` naming the file, the dotted key, the value and what was
expected. Sections that name a registered part (``type=…``) are checked against that part's
signature by :func:`automtl.registry.build`.

Example::

    from automtl.config import load_config
    cfg = load_config("configs/automtl/synthetic_tinyresnet.py",
                      cfg_options=["pre_train.iters=10", "data.n_train=64"])
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from automtl.errors import ConfigError

if TYPE_CHECKING:
    from mmengine.config import Config
    from pydantic import BaseModel

__all__ = ["KINDS", "config_kind", "dump_config", "load_config", "parse_cfg_options", "plain",
           "check_top_level", "validate"]

M = TypeVar("M", bound="BaseModel")

#: the runners a config may need, by the section that marks it
KINDS = ("automtl", "supernet", "search", "mm", "delta")
#: keys every config may hold, whatever its kind (mmengine's own and ours)
COMMON_KEYS = frozenset({"custom_imports", "seed", "work_dir"})


def parse_cfg_options(options: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]", "d=x"]`` → ``{"a.b": 1, "c": [1, 2], "d": "x"}`` (values parsed as
    Python literals where they are one, strings otherwise), or a mapping as it is."""
    import ast

    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    out: dict[str, Any] = {}
    for item in options:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError("a --cfg-options item is KEY=VALUE", key="--cfg-options",
                              value=item)
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = {"true": True, "false": False, "none": None}.get(text.lower(), text)
        out[key.strip()] = value
    return out


def load_config(path: str | os.PathLike[str],
                cfg_options: Iterable[str] | Mapping[str, Any] | None = None) -> Config:
    """Read an mmengine config (``_base_`` resolved, ``custom_imports`` imported) and apply
    ``cfg_options`` overrides; :class:`ConfigError` naming the file when it cannot be read."""
    from mmengine.config import Config

    path = str(path)
    if not Path(path).is_file():
        raise ConfigError("config file not found", path=path)
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # syntax errors, bad imports inside the config, bad _base_
        raise ConfigError(f"cannot load config: {type(exc).__name__}: {exc}", path=path) from exc
    overrides = parse_cfg_options(cfg_options)
    if overrides:
        try:
            cfg.merge_from_dict(overrides)
        except Exception as exc:  # merging a dict into a scalar and the like
            raise ConfigError(f"cannot apply --cfg-options {overrides}: {exc}", path=path) from exc
    return cfg


def plain(obj: Any) -> Any:
    """An mmengine ``ConfigDict`` (or ``Config``) as plain dicts and lists, recursively."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def config_kind(cfg: Mapping[str, Any]) -> str:
    """``search`` (a ``search`` section), ``supernet`` (a ``supernet_train`` section), ``mm``
    (an OpenMMLab Runner config: it has its own data loaders) or ``automtl`` (three-phase training)."""
    if "train_dataloader" in cfg or "test_dataloader" in cfg:
        return "mm"
    if "search" in cfg:
        return "search"
    if "supernet_train" in cfg:
        return "supernet"
    if "delta" in cfg:  # delta sharing (automtl.cli.run_delta)
        return "delta"
    return "automtl"


def check_top_level(cfg: Mapping[str, Any], allowed: Iterable[str], *, path: str | None = None,
                    required: Sequence[str] = ()) -> None:
    """Refuse unknown top-level keys (naming the known ones) and missing required ones."""
    known = set(allowed) | COMMON_KEYS
    unknown = sorted(str(k) for k in cfg if k not in known and not str(k).startswith("_"))
    if unknown:
        raise ConfigError(f"unknown top-level key; known: {sorted(known)}", key=unknown[0],
                          path=path)
    for key in required:
        if key not in cfg or cfg[key] is None:
            raise ConfigError("missing key", key=key, path=path)


def validate(schema: type[M], value: Any, *, key: str, path: str | None = None) -> M:
    """``value`` checked against the pydantic ``schema``: the model with defaults filled, or a
    :class:`ConfigError` for the first problem (dotted key, value, what is expected)."""
    from pydantic import ValidationError

    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be a dict, got {type(value).__name__}", key=key, path=path,
                          value=value)
    try:
        return schema.model_validate(plain(value))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in (key, *err["loc"]))
        if err["type"] == "extra_forbidden":
            fields = sorted(schema.model_fields)
            raise ConfigError(f"unknown setting; accepted: {fields}", key=loc, path=path,
                              value=err["input"]) from None
        if err["type"] == "missing":
            raise ConfigError("missing key", key=loc, path=path) from None
        raise ConfigError(err["msg"], key=loc, path=path, value=err["input"]) from None


def dump_config(cfg: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as a ``.py`` file :func:`load_config` reads back (atomically)."""
    from mmengine.config import Config

    from automtl.io import atomic_write_text

    return atomic_write_text(path, Config(plain(cfg)).pretty_text)
