"""The ViT-MVT space as the search sees it: best subnet saved in the ViT-MVT YAML format.

Registered as ``space = dict(type="vit_mvt", preset="tiny", tasks=(...))``; a custom
(e.g. tiny, CPU-sized) space gives ``depths``/``embeds``/``heads``/``mlp_ratios``/``img_size``
instead of a preset.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from search_spaces.vit_mvt import SPACES, SpaceConfig, ViTMVTSpace, save_subnet

from automtl.errors import ConfigError
from automtl.search.space import Candidate


class ViTMVTSearchSpace(ViTMVTSpace):
    """:class:`~search_spaces.vit_mvt.ViTMVTSpace` whose ``save`` writes the subnet YAML."""

    best_filename = "best_subnet.yaml"

    def save(self, candidate: Candidate, path: str | os.PathLike[str]) -> Path:
        """Write ``candidate`` with :func:`search_spaces.vit_mvt.save_subnet` (atomic)."""
        save_subnet(self.canonical(candidate), path)
        return Path(path)


def build_vit_space(preset: str | None = "tiny", tasks: Sequence[str] = ("cls", "seg"), *,
                    num_outputs: Mapping[str, int] | None = None,
                    head_kinds: Mapping[str, str] | None = None, name: str = "custom",
                    depths: Sequence[int] | None = None, embeds: Sequence[int] | None = None,
                    heads: Sequence[int] | None = None, mlp_ratios: Sequence[float] | None = None,
                    img_size: int | None = None) -> ViTMVTSearchSpace:
    """A preset (``tiny``/``small``/``base``) or a custom ViT-MVT space for the search."""
    custom = dict(depths=depths, embeds=embeds, heads=heads, mlp_ratios=mlp_ratios,
                  img_size=img_size)
    given = {k: v for k, v in custom.items() if v is not None}
    if preset is not None:
        if preset not in SPACES:
            raise ConfigError(f"unknown preset {preset!r}; use one of {sorted(SPACES)} or "
                              "preset=None with depths/embeds/heads", key="space.preset")
        base = SPACES[preset]
        cfg = SpaceConfig(base.name, **{
            "depths": tuple(given.get("depths", base.depths)),
            "embeds": tuple(given.get("embeds", base.embeds)),
            "heads": tuple(given.get("heads", base.heads)),
            "mlp_ratios": tuple(float(r) for r in given.get("mlp_ratios", base.mlp_ratios)),
            "img_size": int(given.get("img_size", base.img_size))})
    else:
        for key in ("depths", "embeds", "heads"):
            if key not in given:
                raise ConfigError("missing key (needed when preset=None)", key=f"space.{key}")
        cfg = SpaceConfig(name, tuple(given["depths"]), tuple(given["embeds"]),
                          tuple(given["heads"]),
                          tuple(float(r) for r in given.get("mlp_ratios", (3.0, 3.5, 4.0))),
                          int(given.get("img_size", 224)))
    return ViTMVTSearchSpace(cfg, tuple(tasks), num_outputs=num_outputs, head_kinds=head_kinds)


def build_vit_supernet(space: ViTMVTSpace, **kw: Any) -> Any:
    """The weight-entangled supernet of ``space``."""
    from search_spaces.vit_mvt import build_supernet

    return build_supernet(space, **kw)
