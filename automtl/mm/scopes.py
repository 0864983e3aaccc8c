"""Register automtl parts in the OpenMMLab scopes (mmpretrain, mmdet, mmseg) at once.

A part decorated with :func:`register_mm` is reachable from a config of any of the three
libraries by its plain name (``type="ViTMVTSubnetBackbone"`` under ``default_scope="mmdet"``)
and from everywhere as ``type="automtl.NAME"`` (automtl's ``MODELS`` is a child of mmengine's).
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

from mmengine.registry import Registry

from automtl.errors import ConfigError
from automtl.registry import MODELS

#: the OpenMMLab libraries automtl plugs into, by their registry scope
MM_SCOPES: dict[str, str] = {"mmpretrain": "mmpretrain.registry", "mmdet": "mmdet.registry",
                             "mmseg": "mmseg.registry"}
T = TypeVar("T", bound=type)


def require_mm(what: str = "the OpenMMLab pipelines") -> None:
    """Raise a :class:`ConfigError` naming the install command when the ``mm`` extra is absent."""
    missing = [lib for lib in ("mmcv", *MM_SCOPES) if importlib.util.find_spec(lib) is None]
    if missing:
        raise ConfigError(f"{what} need the `mm` extra ({', '.join(missing)} not installed): "
                          "run `make install-mm` (see README, 'OpenMMLab pipelines')")


def scope_models(scope: str) -> Registry:
    """The ``MODELS`` registry of one OpenMMLab scope (``mmpretrain``, ``mmdet``, ``mmseg``)."""
    if scope not in MM_SCOPES:
        raise ConfigError(f"unknown OpenMMLab scope {scope!r}; known: {sorted(MM_SCOPES)}")
    require_mm()
    return importlib.import_module(MM_SCOPES[scope]).MODELS


def register_mm(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: register in automtl's ``MODELS`` and in the three scopes' ``MODELS``."""

    def deco(cls: T) -> T:
        key = name or cls.__name__
        MODELS.register_module(name=key, module=cls, force=True)
        for scope in MM_SCOPES:
            scope_models(scope).register_module(name=key, module=cls, force=True)
        return cls

    return deco


def build_in_scope(scope: str, cfg: Any) -> Any:
    """Build ``cfg`` with the ``MODELS`` registry of ``scope`` (e.g. an mmdet RPN head)."""
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope(scope):
        return scope_models(scope).build(cfg)
