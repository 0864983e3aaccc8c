"""Small argument checks shared by the parts a config builds (data, backbones, heads): each
names the config key and the value, so a bad setting is a :class:`ConfigError`, never a
``ValueError`` from deep inside numpy or torch."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from automtl.errors import ConfigError

__all__ = ["check_int", "check_ints", "check_number", "check_seed"]

SEED_MAX = 2**32 - 1  # numpy's seed range


def check_int(value: Any, key: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int within ``[lo, hi]`` (bools and floats refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError("must be an integer", key=key, value=value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f">= {lo}" if lo is not None else f"<= {hi}")
        raise ConfigError(f"must be {bounds}", key=key, value=value)
    return value


def check_ints(value: Any, key: str, *, lo: int | None = None, length: int | None = None
               ) -> tuple[int, ...]:
    """``value`` as a non-empty tuple of ints ``>= lo`` (of ``length`` items when given)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError("must be a non-empty list of integers", key=key, value=value)
    if length is not None and len(value) != length:
        raise ConfigError(f"must hold {length} integers", key=key, value=value)
    return tuple(check_int(v, f"{key}.{i}", lo=lo) for i, v in enumerate(value))


def check_number(value: Any, key: str, *, lo: float | None = None, lo_open: bool = False) -> float:
    """``value`` as a finite float ``>= lo`` (``> lo`` with ``lo_open``; bools refused)."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(float(value))):
        raise ConfigError("must be a finite number", key=key, value=value)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"must be {'>' if lo_open else '>='} {lo}", key=key, value=value)
    return float(value)


def check_seed(value: Any, key: str = "seed") -> int:
    """A random seed: an int in numpy's range ``[0, 2**32 - 1]``."""
    return check_int(value, key, lo=0, hi=SEED_MAX)
