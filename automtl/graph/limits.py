"""Memory limit of a network: refuse one that cannot fit, from the IR alone, before any tensor is made.

The size is float32 parameters (``param_count × 4`` bytes, times the copies a caller makes)
plus float32 activations (every node's inferred output, as ``GraphModule.forward`` keeps them
all). The limit is ``max_bytes=`` if given, else ``$AUTOMTL_MAX_MODEL_BYTES``, else half of
the memory the OS reports as available.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from automtl.errors import ConfigError, ModelTooLargeError
from automtl.graph.layers import node_param_count
from automtl.graph.module import split_source

if TYPE_CHECKING:
    from automtl.graph.ir import Graph, Node

ENV_VAR = "AUTOMTL_MAX_MODEL_BYTES"
MEMORY_FRACTION = 0.5  # of MemAvailable: room for gradients, optimiser state and the rest of the process
BYTES_PER_VALUE = 4  # float32
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?(?:[eE]\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", re.IGNORECASE)


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units (``1.5 GiB``), for messages people read."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


def parse_bytes(text: str, key: str = ENV_VAR) -> int:
    """A byte count from ``123``, ``1e9``, ``512M`` or ``8GiB`` (binary units); ConfigError names ``key``."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ConfigError("expected a byte count such as 4000000000, 512M or 8GiB", key=key, value=text)
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError("expected a positive, finite byte count", key=key, value=text)
    return int(value)


def available_memory() -> int | None:
    """Bytes the OS can hand out now (MemAvailable, else free pages); None where it cannot say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for row in f:
                if row.startswith("MemAvailable:"):
                    return int(row.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_limit(max_bytes: int | None = None) -> tuple[int | None, str]:
    """The limit in bytes (None: no limit known) and where it comes from, for the error message."""
    if max_bytes is not None:
        if max_bytes <= 0:
            raise ConfigError("must be a positive byte count", key="max_bytes", value=max_bytes)
        return int(max_bytes), "max_bytes="
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return parse_bytes(env), f"${ENV_VAR}"
    avail = available_memory()
    if avail is None:
        return None, "no limit: available memory unknown"
    return int(avail * MEMORY_FRACTION), f"{MEMORY_FRACTION:.0%} of available memory {human_bytes(avail)}"


@dataclass(frozen=True)
class ModelSize:
    """Bytes a network needs at float32, and its largest node (by parameters + activation)."""

    param_bytes: int
    activation_bytes: int
    largest: Node | None
    largest_bytes: int

    @property
    def total(self) -> int:
        return self.param_bytes + self.activation_bytes


def node_bytes(node: Node, param_copies: int = 1) -> tuple[int, int]:
    """Parameter and activation bytes of one node (unknown shape: no activation counted)."""
    params = node_param_count(node) * param_copies * BYTES_PER_VALUE
    acts = math.prod(int(d) for d in node.shape) * BYTES_PER_VALUE if node.shape is not None else 0
    return params, acts


def model_size(graph: Graph, param_copies: int = 1) -> ModelSize:
    """Parameter and activation bytes of ``graph`` from its attributes and shapes (nothing allocated)."""
    params = acts = biggest = 0
    largest: Node | None = None
    for node in graph:
        p, a = node_bytes(node, param_copies)
        params, acts = params + p, acts + a
        if p + a > biggest:
            largest, biggest = node, p + a
    return ModelSize(params, acts, largest, biggest)


def allocates() -> bool:
    """Whether modules built now take real memory (not on the ``meta`` default device)."""
    return torch.get_default_device().type != "meta"


def check_model_size(graph: Graph, *, max_bytes: int | None = None, param_copies: int = 1) -> ModelSize:
    """Raise :class:`ModelTooLargeError` when ``graph`` needs more than the limit (call before building).

    ``param_copies``: how many copies of the weights the caller makes (a supernet keeps one per task).
    """
    size = model_size(graph, param_copies)
    limit, origin = memory_limit(max_bytes)
    if limit is None or size.total <= limit or not allocates():
        return size
    raise too_large(graph, size, limit, origin)


def too_large(graph: Graph, size: ModelSize, limit: int, origin: str) -> ModelTooLargeError:
    """The error for a network over the limit: both sizes, the limit and where it comes from, the largest layer."""
    node = size.largest
    path, line = split_source(node.source) if node is not None else (None, None)
    inputs = ", ".join(str(list(graph[i].shape or ())) for i in graph.inputs)
    where = f"; largest layer needs {human_bytes(size.largest_bytes)}" if node is not None else ""
    return ModelTooLargeError(
        f"network '{graph.name}' needs {size.total} bytes ({human_bytes(size.total)}: parameters "
        f"{human_bytes(size.param_bytes)} + activations {human_bytes(size.activation_bytes)} for input "
        f"{inputs or '?'}, float32), over the limit of {limit} bytes ({human_bytes(limit)}, {origin}){where}; "
        f"refused before allocating (raise the limit with max_bytes= or ${ENV_VAR})",
        size=size.total, limit=limit, path=path, line=line, layer=node.name if node is not None else None)
