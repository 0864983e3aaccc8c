"""The toy-space search config the command-line search tests write (one template for all)."""
from __future__ import annotations

from pathlib import Path

TEMPLATE = """
seed = 0
study = "s"
space = dict(type="toy_layered")
evaluator = dict(type="toy", delay={delay})
search = dict(budget=(20_000, 40_000), generations={gens}, population={population},
              top_k={top_k}, n_mutations={children}, n_crossovers={children})
"""


def write_toy_config(folder: Path, *, delay: float = 0.0, gens: int = 1, population: int = 4,
                     top_k: int = 2) -> Path:
    """``folder/cfg.py``: a toy search of ``population`` × ``gens`` candidates, each evaluation
    sleeping ``delay`` seconds (so tests can kill or join it mid-run)."""
    path = folder / "cfg.py"
    path.write_text(TEMPLATE.format(delay=delay, gens=gens, population=population,
                                    top_k=top_k, children=population // 2))
    return path
