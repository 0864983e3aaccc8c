"""Spaces and evaluators by name, so configs say ``space = dict(type="toy_layered", …)``.

A builder takes the config dict (without ``type``) and returns the object; evaluator builders
also get the space. Real spaces register here lazily (their imports are heavy).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from automtl.errors import ConfigError
from automtl.search.evaluate import Evaluator
from automtl.search.space import SearchSpace

SpaceBuilder = Callable[..., SearchSpace]
EvaluatorBuilder = Callable[..., Evaluator]

SPACES: dict[str, SpaceBuilder] = {}
EVALUATORS: dict[str, EvaluatorBuilder] = {}


def register_space(name: str) -> Callable[[SpaceBuilder], SpaceBuilder]:
    """Decorator: make ``fn(**cfg) -> SearchSpace`` available as ``type=name``."""
    def deco(fn: SpaceBuilder) -> SpaceBuilder:
        SPACES[name] = fn
        return fn
    return deco


def register_evaluator(name: str) -> Callable[[EvaluatorBuilder], EvaluatorBuilder]:
    """Decorator: make ``fn(space, **cfg) -> Evaluator`` available as ``type=name``."""
    def deco(fn: EvaluatorBuilder) -> EvaluatorBuilder:
        EVALUATORS[name] = fn
        return fn
    return deco


def _split(cfg: Any, key: str, table: Mapping[str, Any]) -> tuple[Callable[..., Any], dict]:
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"must be a dict with a 'type', got {type(cfg).__name__}", key=key)
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind is None:
        raise ConfigError("missing key", key=f"{key}.type")
    if kind not in table:
        raise ConfigError(f"unknown type {kind!r}; known: {sorted(table)}", key=f"{key}.type")
    return table[kind], cfg


def build_space(cfg: Mapping[str, Any]) -> SearchSpace:
    """The space a config describes (``dict(type=…, **kwargs)``)."""
    fn, kw = _split(cfg, "space", SPACES)
    try:
        return fn(**kw)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for space '{cfg['type']}': {exc}", key="space") from exc


def build_evaluator(cfg: Mapping[str, Any], space: SearchSpace, **context: Any) -> Evaluator:
    """The evaluator a config describes, for ``space``; ``context`` (``work_dir``, ``seed``)
    is passed to builders that take those arguments and the config does not set."""
    import inspect

    fn, kw = _split(cfg, "evaluator", EVALUATORS)
    accepted = inspect.signature(fn).parameters
    for k, v in context.items():
        if k in accepted and k not in kw and v is not None:
            kw[k] = v
    try:
        return fn(space, **kw)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for evaluator '{cfg['type']}': {exc}",
                          key="evaluator") from exc


@register_space("toy_layered")
def _toy_space(**kw: Any) -> SearchSpace:
    from automtl.search.toy import LayeredToySpace

    return LayeredToySpace(**kw)


@register_evaluator("toy")
def _toy_evaluator(space: SearchSpace, **kw: Any) -> Evaluator:
    from automtl.search.toy import LayeredToySpace, ToyEvaluator

    if not isinstance(space, LayeredToySpace):
        raise ConfigError("the 'toy' evaluator only scores the 'toy_layered' space",
                          key="evaluator.type")
    return ToyEvaluator(space, **kw)


@register_space("vit_mvt")
def _vit_space(**kw: Any) -> SearchSpace:
    from automtl.search.vit_space import build_vit_space

    return build_vit_space(**kw)


@register_space("automtl_policy")
def _policy_space(**kw: Any) -> SearchSpace:
    from automtl.search.policy_space import build_policy_space

    return build_policy_space(**kw)


@register_evaluator("supernet")
def _supernet_evaluator(space: SearchSpace, *, work_dir: Any = None, seed: int = 0,
                        **kw: Any) -> Evaluator:
    from automtl.search.supernet_job import build_supernet_evaluator

    return build_supernet_evaluator(space, work_dir=work_dir, seed=seed, **kw)
