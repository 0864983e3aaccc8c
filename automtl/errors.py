"""Typed errors of automtl: each one carries the file, line, layer or key it is about."""
from __future__ import annotations

from typing import Any


class AutoMTLError(Exception):
    """Base class of every error automtl raises on purpose."""


class GraphError(AutoMTLError):
    """A backbone description that cannot become a graph.

    Carries where the problem is (``path``, ``line``, ``layer``) so the message points the
    user at the exact place to fix.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        layer: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.layer = layer
        self.detail = message
        where = []
        if path is not None:
            where.append(f"{path}" + (f":{line}" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if layer is not None:
            where.append(f"layer '{layer}'")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class PrototxtSyntaxError(GraphError):
    """The text-format parser rejected the file."""


class UnsupportedLayerError(GraphError):
    """A layer type (or module/op) that automtl cannot represent."""


class UnknownBlobError(GraphError):
    """A ``bottom`` (input) that no layer produces."""


class GraphCycleError(GraphError):
    """The layers form a cycle."""


class ShapeError(GraphError):
    """Shapes that do not fit together (e.g. Eltwise of different shapes)."""


class MissingInputShapeError(GraphError):
    """The network declares no input shape."""


class TraceError(GraphError):
    """torch.fx could not trace a module."""


class ExportError(GraphError):
    """A graph that cannot be written in the requested format."""


class ModelTooLargeError(GraphError):
    """A network whose parameters and activations exceed the memory limit (refused before allocating).

    ``size`` and ``limit`` are in bytes; ``layer`` names the largest layer.
    """

    def __init__(self, message: str, *, size: int, limit: int, path: str | None = None,
                 line: int | None = None, layer: str | None = None) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message, path=path, line=line, layer=layer)


class ModelError(AutoMTLError):
    """A multi-task model built from parts that do not fit together."""


class HeadMismatchError(ModelError):
    """A task head whose input channels differ from the backbone output."""


class UnknownTaskError(ModelError, KeyError):
    """A task name the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return Exception.__str__(self)


class PolicyError(AutoMTLError):
    """A policy that does not fit the model (names the layers/tasks that differ)."""


class CheckpointError(AutoMTLError):
    """A checkpoint or state dict that does not fit (names the keys/shapes that differ)."""


class ConfigError(AutoMTLError):
    """A config missing a key or holding a value of the wrong kind: names the file, the dotted
    key and, where given, the offending value."""

    _NO_VALUE = object()

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None,
                 value: Any = _NO_VALUE) -> None:
        self.message = message
        self.key = key
        self.path = path
        self.value = value
        super().__init__(message)

    def __str__(self) -> str:
        where = " ".join(x for x in (f"{self.path}:" if self.path else "",
                                     f"key '{self.key}':" if self.key else "") if x)
        shown = "" if self.value is ConfigError._NO_VALUE else f" (got {self.value!r})"
        return f"{where} {self.message}{shown}".strip()


class DataError(AutoMTLError):
    """A data root in the wrong layout (names the first missing file)."""


class WorkDirBusyError(AutoMTLError):
    """Another live run holds the work directory (names the holder's host:pid and purpose)."""


class TrainingError(AutoMTLError):
    """Training cannot go on (e.g. NaN loss at a named iteration and task)."""


class ArchError(AutoMTLError):
    """An architecture outside its search space (names the key and the allowed values)."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = None) -> None:
        self.key = key
        self.value = value
        super().__init__(message if key is None else f"'{key}': {message}")


class SearchError(AutoMTLError):
    """A search that cannot run: empty budget window, bad storage, wrong study."""
