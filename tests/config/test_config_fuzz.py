"""Fuzzing the config front doors: config dicts around valid ones, mutated (values of the wrong
kind, negative, huge, None, strings, nested junk; keys added, removed, misspelt), must either
pass or fail with a typed :class:`~automtl.errors.AutoMTLError`; anything else is a bug.

* train configs: :func:`automtl.cli.run_automtl.check_config`, then, where the check passes and
  every number of the ``data``/``model`` sections is tiny, :func:`automtl.data.build_data` and
  :func:`automtl.supernet.registration.build_model` (bigger ones are only checked);
* search configs: :func:`automtl.search.config.build_job` with the toy space and evaluator, an
  in-memory study and the work dir in a temporary folder.

Bounded for CI (a fixed seed, 60 cases per test, ~15 s). A larger random run by hand (add
``AUTOMTL_FUZZ_STRICT=1`` to fail on the :data:`KNOWN_BUGS` of other modules too)::

    AUTOMTL_FUZZ_EXAMPLES=2000 python -m pytest tests/config/test_config_fuzz.py -s
"""
from __future__ import annotations

import copy
import functools
import math
import os
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automtl.cli.run_automtl import check_config
from automtl.data import build_data
from automtl.errors import AutoMTLError
from automtl.search.config import build_job
from automtl.supernet.registration import build_model

optuna.logging.set_verbosity(optuna.logging.WARNING)

EXAMPLES = int(os.environ.get("AUTOMTL_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 60, deadline=10_000, derandomize=not EXAMPLES,
                database=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])
#: largest number (and sequence length) of a data/model section that is still built
TINY = 32
#: crashes this fuzzer found in other modules' code (reported to their owners): the deepest
#: automtl frame's file and the exception type. Counted as a known bug instead of failing, unless
#: AUTOMTL_FUZZ_STRICT=1; delete an entry once its fix lands.
KNOWN_BUGS: dict[tuple[str, str], str] = {}
STRICT = os.environ.get("AUTOMTL_FUZZ_STRICT") == "1"
#: outcomes per test, printed at the end of a run with ``-s``
OUTCOMES: dict[str, Counter[str]] = {"train": Counter(), "search": Counter()}

TRAIN = dict(
    tasks=["segment_semantic", "depth_zbuffer"],
    seed=0,
    data=dict(type="synthetic", size=8, n_train=4, n_val=2, batch_size=2),
    model=dict(backbone=dict(type="TinyResNet", widths=(4, 8)),
               head=dict(type="ConvHead", mid_channels=4), input_shape=(1, 3, 8, 8),
               bn_per_task=True),
    trainer=dict(checkpoint_iters=2, print_iters=2, progress=False, weighting="fixed"),
    pre_train=dict(iters=4, lr=1e-3),
    alter_train_with_reg=dict(iters=4, policy_network_iters=(1, 1), network_lr=1e-3,
                              loss_lambda=dict(policy=5e-4)),
    sample=dict(n=4, budget=1.0, score=True, seed=0),
    post_train=dict(iters=4, lr=1e-3),
)
SEARCH = dict(
    seed=0, study="fuzz", storage=None, work_dir="work_dirs/fuzz", tensorboard=False,
    space=dict(type="toy_layered", tasks=("cls", "seg"), depths=(1, 2), embeds=(8, 16),
               ratios=(2, 4), seed=0),
    evaluator=dict(type="toy", delay=0.0),
    fitness=dict(type="weighted_sum", weights=dict(cls=1.0, seg=2.0)),
    search=dict(mode="evolution", budget=(500, 20_000), generations=2, population=4, top_k=2,
                n_mutations=2, n_crossovers=2, p_layer=0.2, p_global=0.4),
)

Path = tuple[Any, ...]

# -- junk values -----------------------------------------------------------------------
LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.sampled_from([-1, 0, 1, 2, 3, 10**9, 2**63, -2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, -0.5, 1e300, -0.0]),
    st.text(max_size=8),
    st.sampled_from(["", "x", "1", "-1", "None", "True", "synthetic", "TinyResNet", "ConvHead",
                     "toy", "toy_layered", "t_score", "weighted_sum", "delta_m", "pareto",
                     "random", "segment_semantic", "normal", "cls", "seg"]),
)
JUNK = st.recursive(LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
    st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


def _nudge(value: Any) -> list[Any]:
    """Near misses of a valid ``value``: negative, zero, huge, a string of it, a float."""
    if isinstance(value, bool):
        return [not value, int(value), str(value), None]
    if isinstance(value, (int, float)):
        return [-value, -1, 0, value * 10**9, str(value), float(value) + 0.5, math.nan, None]
    if isinstance(value, str):
        return [value.upper(), value + "x", value[:-1], "", None, [value]]
    if isinstance(value, (list, tuple)):
        return [type(value)(), type(value)(list(value) * 3), list(value)[:1], dict(), None]
    return [None, [], "x"]


def _tweak(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same kind as a valid ``value`` (small ints, floats in 0..2, the other bool,
    a shorter or longer sequence): the edges a type check lets through."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(0, 16)
    if isinstance(value, float):
        return st.floats(0.0, 2.0)
    if isinstance(value, (list, tuple)) and value:
        return st.integers(0, 2 * len(value)).map(
            lambda n: type(value)((list(value) * 3)[:n]))
    return st.just(value)


def _misspell(key: str) -> list[str]:
    """Keys one typo away from ``key``."""
    return [key[:-1] or "_", key + "s", key.upper(), key.replace("_", ""), "_" + key,
            key[1:] + key[:1]]


# -- walking and changing nested configs -----------------------------------------------
def _paths(cfg: Any, prefix: Path = ()) -> list[Path]:
    """Every path into the nested dicts/lists/tuples of ``cfg`` (the root excluded)."""
    out: list[Path] = []
    if isinstance(cfg, dict):
        for k in sorted(cfg, key=repr):
            out += [prefix + (k,)] + _paths(cfg[k], prefix + (k,))
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            out += [prefix + (i,)] + _paths(v, prefix + (i,))
    return out


def _get(cfg: Any, path: Path) -> Any:
    for k in path:
        cfg = cfg[k]
    return cfg


def _edit(cfg: Any, path: Path, change: Callable[[Any, Any], Any]) -> Any:
    """``cfg`` with the container at ``path[:-1]`` replaced by ``change(container, last key)``
    (tuples are rebuilt)."""
    if len(path) == 1:
        return change(cfg, path[0])
    head, rest = path[0], path[1:]
    inner = _edit(cfg[head], rest, change)
    if isinstance(cfg, tuple):
        return tuple(inner if i == head else v for i, v in enumerate(cfg))
    cfg = copy.copy(cfg)
    cfg[head] = inner
    return cfg


def _set(container: Any, key: Any, value: Any) -> Any:
    if isinstance(container, tuple):
        return tuple(value if i == key else v for i, v in enumerate(container))
    out = copy.copy(container)
    out[key] = value
    return out


def _drop(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return {k: v for k, v in container.items() if k != key}
    return type(container)(v for i, v in enumerate(container) if i != key)


def _rename(container: Any, key: Any, new: Any) -> Any:
    if not isinstance(container, dict):
        return _set(container, key, new)
    return {(new if k == key else k): v for k, v in container.items()}


def _add(container: Any, key: Any, new: Any, value: Any) -> Any:
    """Add ``new: value`` next to ``key`` (in a dict), or append ``value`` (in a sequence)."""
    if isinstance(container, dict):
        return {**container, new: value}
    return type(container)([*container, value])


def _change(draw: st.DrawFn, op: str, old: Any, key: Any) -> Callable[[Any, Any], Any]:
    """The edit ``op`` of the value ``old`` at ``key``, as ``change(container, key)``."""
    if op == "drop":
        return _drop
    if op == "misspell" and isinstance(key, str):
        return functools.partial(_rename, new=draw(st.sampled_from(_misspell(key))))
    if op == "add" or op == "misspell":
        new = draw(st.sampled_from(["extra", "type", "iters", "size", "seed", *_misspell(
            str(key))]))
        return functools.partial(_add, new=new, value=draw(JUNK))
    value = {"tweak": _tweak(old), "junk": JUNK, "nudge": st.sampled_from(_nudge(old))}[op]
    return functools.partial(_set, value=draw(value))


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` after 1..3 random edits at random places."""
    cfg: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(cfg)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        old = _get(cfg, path)
        key = path[-1]
        op = draw(st.sampled_from(["tweak", "tweak", "junk", "nudge", "drop", "misspell",
                                   "add"]))
        cfg = _edit(cfg, path, _change(draw, op, old, key))
    return dict(cfg)


# -- what is built -------------------------------------------------------------------------
def _tiny(obj: Any) -> bool:
    """Whether every number in ``obj`` is at most ``TINY`` and every sequence that short."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return True
    if isinstance(obj, (int, float)):
        return math.isnan(obj) or abs(obj) <= TINY
    if isinstance(obj, dict):
        return len(obj) <= TINY and all(_tiny(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return len(obj) <= 8 and all(_tiny(v) for v in obj)
    return True


def _site(exc: BaseException) -> str:
    """The file of the deepest automtl frame of ``exc``'s traceback (``automtl/…``)."""
    files = [f.filename for f in traceback.extract_tb(exc.__traceback__)
             if f"{os.sep}automtl{os.sep}" in f.filename]
    return "automtl/" + files[-1].rpartition(f"{os.sep}automtl{os.sep}")[2] if files else "?"


def _outcome(kind: str, body: Callable[[], str]) -> None:
    """Run ``body``; count its outcome; a failure must be a typed automtl error (or, unless
    strict, one of :data:`KNOWN_BUGS`)."""
    try:
        OUTCOMES[kind][body()] += 1
    except AutoMTLError as exc:
        OUTCOMES[kind][f"refused: {type(exc).__name__}"] += 1
    except Exception as exc:
        known = KNOWN_BUGS.get((_site(exc), type(exc).__name__))
        if STRICT or known is None:
            raise
        OUTCOMES[kind][f"known bug: {known}"] += 1


def _train(cfg: dict[str, Any]) -> str:
    plan = check_config(cfg)
    if not (_tiny(plan.data) and _tiny(plan.model) and _tiny(plan.tasks)):
        return "checked only (not tiny)"
    build_data(plan.data, plan.tasks, seed=plan.seed)
    build_model(plan.model, plan.tasks)
    return "built"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("fuzz_search"))


def test_bases_are_valid(work):
    assert _train(TRAIN) == "built"
    build_job(SEARCH, storage="memory", work_dir=work, progress=False).search.close()


@FUZZ
@given(cfg=mutated(TRAIN))
def test_train_configs_pass_or_fail_typed(cfg):
    _outcome("train", lambda: _train(cfg))


@FUZZ
@given(cfg=mutated(SEARCH))
def test_search_configs_pass_or_fail_typed(cfg, work):
    def body() -> str:
        job = build_job(cfg, storage="memory", work_dir=work, progress=False, tensorboard=False)
        job.search.close()
        return "built"

    _outcome("search", body)


def teardown_module() -> None:
    for kind, counts in OUTCOMES.items():
        print(f"\nfuzz {kind}: {sum(counts.values())} cases: {dict(counts.most_common())}")
