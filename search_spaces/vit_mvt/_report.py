"""Readable sharing report: per layer and task, which adaptive linears are shared."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._config import LINEARS, SHARED


def format_sharing_report(genes: Mapping[str, Any]) -> str:
    """A text table from sharing genes (``share.<i>.<linear>.<task>``): one row per layer,
    one column per task, ``S`` = shared and ``T`` = task-specific for qkv/proj/fc1/fc2."""
    table: dict[int, dict[str, dict[str, str]]] = {}
    for key, value in genes.items():
        if key.startswith("share."):
            _, index, lin, task = key.split(".")
            table.setdefault(int(index), {}).setdefault(task, {})[lin] = value
    if not table:
        return "(single task: nothing to share)"
    tasks = sorted({t for row in table.values() for t in row})
    head = f"{'layer':>5}  " + "  ".join(f"{t:<16}" for t in tasks)
    lines = [head, f"{'':>5}  " + "  ".join(f"{'qkv proj fc1 fc2':<16}" for _ in tasks)]
    n_shared = n_all = 0
    for layer in sorted(table):
        cells = []
        for t in tasks:
            row = table[layer].get(t, {})
            marks = ["S" if row.get(lin, SHARED) == SHARED else "T" for lin in LINEARS]
            n_shared += marks.count("S")
            n_all += len(marks)
            cells.append(f"{marks[0]:<4}{marks[1]:<5}{marks[2]:<4}{marks[3]:<3}")
        lines.append(f"{layer:>5}  " + "  ".join(f"{c:<16}" for c in cells))
    lines.append(f"shared: {n_shared}/{n_all} linear-task pairs")
    return "\n".join(lines)
