"""Registers ViT-MVT in :data:`automtl.registry.SPACES` as ``type="vit_mvt"``.

``space = dict(type="vit_mvt", preset="tiny", tasks=(...))``; a custom (e.g. tiny, CPU-sized)
space gives ``depths``/``embeds``/``heads``/``mlp_ratios``/``img_size`` instead of a preset.
Imported by the registry on first look-up, never by ``import search_spaces.vit_mvt`` (which
stays free of mmengine and the search engine).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from automtl.errors import ConfigError
from automtl.registry import SPACES
from search_spaces.vit_mvt._config import PRESETS, SpaceConfig
from search_spaces.vit_mvt._space import ViTMVTSpace


@SPACES.register_module("vit_mvt")
def build_vit_space(preset: str | None = "tiny", tasks: Sequence[str] = ("cls", "seg"), *,
                    num_outputs: Mapping[str, int] | None = None,
                    head_kinds: Mapping[str, str] | None = None, name: str = "custom",
                    depths: Sequence[int] | None = None, embeds: Sequence[int] | None = None,
                    heads: Sequence[int] | None = None, mlp_ratios: Sequence[float] | None = None,
                    img_size: int | None = None) -> ViTMVTSpace:
    """A preset (``tiny``/``small``/``base``) or a custom ViT-MVT space for the search."""
    if preset is not None:  # the preset, with any of its choices overridden
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; use one of {sorted(PRESETS)} or "
                              "preset=None with depths/embeds/heads", key="space.preset")
        base = PRESETS[preset]
        name = base.name
        depths = base.depths if depths is None else depths
        embeds = base.embeds if embeds is None else embeds
        heads = base.heads if heads is None else heads
        mlp_ratios = base.mlp_ratios if mlp_ratios is None else mlp_ratios
        img_size = base.img_size if img_size is None else img_size
    else:
        depths, embeds, heads = _required(depths, "depths"), _required(embeds, "embeds"), _required(heads, "heads")
        mlp_ratios = (3.0, 3.5, 4.0) if mlp_ratios is None else mlp_ratios
        img_size = 224 if img_size is None else img_size
    cfg = SpaceConfig(name, tuple(depths), tuple(embeds), tuple(heads), tuple(float(r) for r in mlp_ratios),
                      int(img_size))
    return ViTMVTSpace(cfg, tuple(tasks), num_outputs=num_outputs, head_kinds=head_kinds)


def _required(value: Sequence[int] | None, key: str) -> Sequence[int]:
    if value is None:
        raise ConfigError("missing key (needed when preset=None)", key=f"space.{key}")
    return value
