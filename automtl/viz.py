"""Pictures of policies: layers × tasks coloured by share / specialize / skip (PNG)."""
from __future__ import annotations

import os
from pathlib import Path

from automtl.io import atomic_write
from automtl.supernet.policy import CHOICES, Policy

# Colour per choice (also used by the tests to find them in the image).
COLORS: dict[str, str] = {"share": "#4c72b0", "specialize": "#dd8452", "skip": "#c7c7c7"}


def plot_policy(policy: Policy, path: str | os.PathLike[str], *, title: str | None = None,
                dpi: int = 120) -> Path:
    """Draw ``policy`` as a grid (rows: layers in execution order, columns: tasks) into a PNG.

    Example::

        plot_policy(model.sample_policy(seed=0), "policy.png", title="AutoMTL, ResNet-34")
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    layers, tasks = list(policy.layers), list(policy.tasks)
    grid = [[CHOICES.index(policy.choice(layer, t)) for t in tasks] for layer in layers]
    height = max(2.5, 0.18 * len(layers) + 1.2)
    width = max(3.0, 1.1 * len(tasks) + 2.8)
    fig, ax = plt.subplots(figsize=(width, height))
    try:
        cmap = ListedColormap([COLORS[c] for c in CHOICES])
        ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(CHOICES) - 0.5, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        ax.set_yticks(range(len(layers)), layers, fontsize=max(4, min(9, 300 // max(len(layers), 1))))
        ax.set_xticks([x - 0.5 for x in range(1, len(tasks))], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(layers))], minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("task")
        ax.set_ylabel("layer (input → output)")
        if title:
            ax.set_title(title)
        ax.legend(handles=[Patch(color=COLORS[c], label=c) for c in CHOICES], loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), frameon=False)
        fig.tight_layout()
        out = atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return out
