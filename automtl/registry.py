"""The registries every config ``type=`` resolves through (mmengine ``Registry`` roots).

Each family of pluggable parts has one registry. A part registers itself where it is
defined (``@BACKBONES.register_module()``); the modules named in ``locations`` are imported
only when a registry is first asked for a name, so ``import automtl`` stays light and
``import search_spaces.vit_mvt`` never imports the search engine. A user registers their own
part in their own file and names that file in a config's
``custom_imports = dict(imports=["my_parts"])``; nothing in the package changes.

``MODELS`` and ``DATASETS`` are children of mmengine's roots, so OpenMMLab scopes (mmpretrain,
mmdet, mmseg) reach automtl parts as ``type="automtl.NAME"``.

Example::

    from automtl.registry import BACKBONES, build
    net = build(BACKBONES, dict(type="TinyResNet", widths=(16, 32)), key="model.backbone")
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from automtl.errors import ConfigError

SCOPE = "automtl"


class LazyRegistry(Registry):
    """An mmengine ``Registry`` whose plain look-ups stay quiet: mmengine logs every import and
    every hit through ``MMLogger``, which imports torch, so a look-up in a torch-free space (the
    toy search, ViT-MVT counting) would pay for torch. Scoped names (``mmdet.X``) and dotted
    paths still go through mmengine's own ``get``."""

    def get(self, key: str) -> Any:
        """The part registered as ``key`` here or in a parent registry (None if there is none)."""
        self.import_from_location()
        if isinstance(key, str) and "." not in key:
            registry: Registry | None = self
            while registry is not None:
                if key in registry.module_dict:
                    return registry.module_dict[key]
                registry = registry.parent
            return None
        return super().get(key)

    def import_from_location(self) -> None:
        """Import every module of ``locations`` once (they register their parts)."""
        imported: bool = getattr(self, "_imported", False)
        if not imported:
            for location in self._locations:
                importlib.import_module(location)
            self._imported = True

#: feature extractors: ``TinyResNet``, ``torchvision``, ``prototxt``, ``timm``, ``zoo`` …
BACKBONES = LazyRegistry("backbone", scope=SCOPE, locations=["automtl.backbones"])
#: per-task heads: ``ConvHead``, ``ASPPHead`` …
HEADS = LazyRegistry("head", scope=SCOPE, locations=["automtl.heads"])
#: data builders returning ``(train_loaders, val_loaders)``: ``synthetic``, ``NYUv2`` …
DATASETS = LazyRegistry("dataset", parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=["automtl.data.registration"])
#: multi-task loss weightings: ``fixed``, ``uncertainty``, ``dwa``, ``gradnorm`` …
WEIGHTINGS = LazyRegistry("weighting", scope=SCOPE, locations=["automtl.train.weighting"])
#: search spaces: ``toy_layered``, ``automtl_policy``, ``vit_mvt`` …
SPACES = LazyRegistry("search space", scope=SCOPE,
                  locations=["automtl.spaces.registration", "search_spaces.vit_mvt.registration"])
#: candidate evaluators of a search: ``toy``, ``supernet`` …
EVALUATORS = LazyRegistry("evaluator", scope=SCOPE, locations=["automtl.search.evaluators"])
#: fitness functions of a search: ``t_score``, ``weighted_sum``, ``delta_m``
FITNESS = LazyRegistry("fitness", scope=SCOPE, locations=["automtl.search.fitness"])
#: whole models (multi-task networks) for configs and the OpenMMLab scopes
MODELS = LazyRegistry("model", parent=MMENGINE_MODELS, scope=SCOPE,
                  locations=["automtl.supernet.registration", "automtl.models.mlore", "automtl.cli.vit_networks"])

ROOTS: dict[str, Registry] = {
    "BACKBONES": BACKBONES, "HEADS": HEADS, "DATASETS": DATASETS, "WEIGHTINGS": WEIGHTINGS,
    "SPACES": SPACES, "EVALUATORS": EVALUATORS, "FITNESS": FITNESS, "MODELS": MODELS,
}


def known(registry: Registry) -> list[str]:
    """The names ``registry`` can build (its locations imported)."""
    registry.import_from_location()
    return sorted(registry.module_dict)


def lookup(registry: Registry, name: Any, *, key: str) -> Callable[..., Any]:
    """The class or function registered as ``name``; :class:`ConfigError` at ``key`` naming
    the registered choices when there is none."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"must be a registered {registry.name} name, got {name!r}; "
                          f"registered: {known(registry)}", key=key)
    found = registry.get(name)
    if found is None:
        raise ConfigError(f"unknown {registry.name} type {name!r}; registered: {known(registry)} "
                          "(register your own with custom_imports)", key=key)
    return found


def accepted_keys(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword names ``fn`` takes and whether it takes any (``**kwargs``)."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_keys(fn: Callable[..., Any], kwargs: Mapping[str, Any], *, key: str,
               skip: tuple[str, ...] = ()) -> None:
    """:class:`ConfigError` at ``key.<name>`` for the first argument ``fn`` does not take."""
    names, var_kw = accepted_keys(fn)
    if var_kw:
        return
    unknown = sorted(set(kwargs) - names)
    if unknown:
        choices = sorted(names - set(skip) - {"self"})
        raise ConfigError(f"unknown setting; accepted: {choices}", key=f"{key}.{unknown[0]}",
                          value=kwargs[unknown[0]])


def build(registry: Registry, cfg: Any, *args: Any, key: str, **defaults: Any) -> Any:
    """Build ``cfg = dict(type=NAME, **kwargs)`` from ``registry``.

    ``args`` are passed positionally (e.g. the space of an evaluator); ``defaults`` fill
    arguments the builder takes and the config does not set. Every problem is a
    :class:`ConfigError` carrying the dotted key (``model.backbone.type``, ``data.batch``).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"must be a dict with a 'type', got {type(cfg).__name__}", key=key)
    kwargs = dict(cfg)
    if "type" not in kwargs:
        raise ConfigError(f"missing key; registered: {known(registry)}", key=f"{key}.type")
    fn = lookup(registry, kwargs.pop("type"), key=f"{key}.type")
    params = inspect.signature(fn).parameters
    positional = tuple(list(params)[:len(args)])
    check_keys(fn, kwargs, key=key, skip=positional)
    names, var_kw = accepted_keys(fn)
    for k, v in defaults.items():
        if k not in kwargs and v is not None and (var_kw or k in names):
            kwargs[k] = v
    for name, p in list(params.items())[len(args):]:
        if (p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and name not in kwargs):
            raise ConfigError("missing key", key=f"{key}.{name}")
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        if exc.key is None:
            exc.key = key
        elif (exc.key.split(".")[0] in names - set(positional)
              and not exc.key.startswith(f"{key}.")):
            exc.key = f"{key}.{exc.key}"  # the builder named one of its own arguments
        raise
    except (TypeError, ValueError, IndexError) as exc:  # a value the builder could not use
        raise ConfigError(f"bad arguments for {registry.name} '{cfg['type']}': "
                          f"{type(exc).__name__}: {exc}", key=key) from exc
