"""Registers ViT-MVT in :data:`automtl.registry.SPACES` as ``type="vit_mvt"``.

``space = dict(type="vit_mvt", preset="tiny", tasks=(...))``; a custom (e.g. tiny, CPU-sized)
space gives ``depths``/``embeds``/``heads``/``mlp_ratios``/``img_size`` instead of a preset.
Mixture-of-experts layers (M3ViT): ``ffn_kinds`` (``dense`` / ``locality`` / ``moe``) or a fixed
``ffn_layout`` per layer, ``num_experts``, ``top_ks``, ``moe_mlp_ratio``, ``moe=dict(router=…,
task_embed=…, noise_std=…, aux_weight=…, capacity_factor=…)`` and ``budget`` (``total`` /
``active``). Imported by the registry on first look-up, never by ``import
search_spaces.vit_mvt`` (which stays free of mmengine and the search engine).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from automtl.errors import ConfigError
from automtl.registry import SPACES
from search_spaces.vit_mvt._config import FFN_KINDS, PRESETS, MoESettings, SpaceConfig
from search_spaces.vit_mvt._space import ViTMVTSpace


@SPACES.register_module("vit_mvt")
def build_vit_space(preset: str | None = "tiny", tasks: Sequence[str] = ("cls", "seg"), *,
                    num_outputs: Mapping[str, int] | None = None,
                    head_kinds: Mapping[str, str] | None = None, name: str = "custom",
                    depths: Sequence[int] | None = None, embeds: Sequence[int] | None = None,
                    heads: Sequence[int] | None = None, mlp_ratios: Sequence[float] | None = None,
                    img_size: int | None = None, ffn_kinds: Sequence[str] | None = None,
                    ffn_layout: Sequence[str] | None = None, num_experts: Sequence[int] | None = None,
                    top_ks: Sequence[int] | None = None, moe_mlp_ratio: float | None = None,
                    moe: Mapping[str, Any] | None = None, budget: str | None = None) -> ViTMVTSpace:
    """A preset (``tiny``/``small``/``base``, ``m3vit_small``/``edge_moe_tiny``) or a custom
    ViT-MVT space for the search."""
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
        base = SpaceConfig("defaults", depths=(1,), embeds=(8,), heads=(1,))
        depths, embeds, heads = _required(depths, "depths"), _required(embeds, "embeds"), _required(heads, "heads")
        mlp_ratios = (3.0, 3.5, 4.0) if mlp_ratios is None else mlp_ratios
        img_size = 224 if img_size is None else img_size
    if ffn_layout is not None and ffn_kinds is None:  # the kinds the layout uses
        ffn_kinds = tuple(k for k in FFN_KINDS if k in ffn_layout) or ("locality",)
    try:
        settings = base.moe if moe is None else dataclasses.replace(base.moe, **dict(moe))
    except TypeError as exc:
        known = [f.name for f in dataclasses.fields(MoESettings)]
        raise ConfigError(f"unknown MoE setting ({exc}); expected keys out of {known}",
                          key="space.moe", value=dict(moe or {})) from exc
    cfg = SpaceConfig(name, tuple(depths), tuple(embeds), tuple(heads), tuple(float(r) for r in mlp_ratios),
                      int(img_size),
                      ffn_kinds=base.ffn_kinds if ffn_kinds is None else tuple(ffn_kinds),
                      ffn_layout=base.ffn_layout if ffn_layout is None else tuple(ffn_layout),
                      num_experts=base.num_experts if num_experts is None else tuple(num_experts),
                      top_ks=base.top_ks if top_ks is None else tuple(top_ks),
                      moe_mlp_ratio=base.moe_mlp_ratio if moe_mlp_ratio is None else moe_mlp_ratio,
                      moe=settings, budget=base.budget if budget is None else budget)
    return ViTMVTSpace(cfg, tuple(tasks), num_outputs=num_outputs, head_kinds=head_kinds)


def _required(value: Sequence[int] | None, key: str) -> Sequence[int]:
    if value is None:
        raise ConfigError("missing key (needed when preset=None)", key=f"space.{key}")
    return value
