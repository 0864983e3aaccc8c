"""Registers ``ViTMVTNetworks`` in :data:`automtl.registry.MODELS`: one plain ViT-MVT network per
task, every module its own, for delta sharing (a ``delta`` config puts the sub-tasks' deltas on
the base task's attention and MLP projections, :class:`automtl.supernet.delta_model.DeltaModel`).

It builds on ``search_spaces.vit_mvt``, which ``automtl.supernet`` (where ``DeltaModel`` lives)
may not import, so it sits with the config runners. A config's ``model`` section::

    model = dict(type="ViTMVTNetworks",
                 space=dict(preset=None, name="micro", depths=(2,), embeds=(32,), heads=(1,),
                            mlp_ratios=(2.0,), img_size=32),
                 arch=None)              # architecture genes; None: the space's largest subnet
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from automtl.errors import ArchError, ConfigError
from automtl.registry import MODELS, SPACES, build

if TYPE_CHECKING:
    from search_spaces.vit_mvt import MultiTaskViTMVT


@MODELS.register_module("ViTMVTNetworks")
def build_vit_mvt_networks(tasks: Sequence[str], *, space: Mapping[str, Any],
                           arch: Mapping[str, Any] | None = None, num_classes: int | None = None,
                           drop_path_rate: float = 0.0) -> MultiTaskViTMVT:
    """Separate ViT-MVT networks of one architecture, each exported (with modules of its own)
    from one freshly initialised supernet.

    ``space``: the settings of a registered ``vit_mvt`` space without ``tasks`` /
    ``num_outputs`` (they come from the tasks; a head is dense unless its task starts with
    ``cls``); ``arch``: architecture genes without sharing genes (None: the largest subnet);
    ``num_classes``: classes of segmentation tasks (default: the synthetic scenes').
    """
    from automtl.data.tasks import task_out_channels
    from search_spaces.vit_mvt import MultiTaskViTMVT, ViTMVTNet, build_supernet, export_subnet

    if not isinstance(space, Mapping):
        raise ConfigError("must be a dict of ViT-MVT space settings", key="model.space", value=space)
    spec = dict(space)
    for k in ("type", "tasks", "num_outputs"):
        if k in spec:
            raise ConfigError("set by the model (a vit_mvt space for its tasks)", key=f"model.space.{k}",
                              value=spec[k])
    names = list(tasks)
    outputs = {t: task_out_channels(t, num_classes=num_classes) for t in names}
    vit_space = build(SPACES, {"type": "vit_mvt", **spec, "tasks": tuple(names), "num_outputs": outputs},
                      key="model.space")
    if arch is not None and not isinstance(arch, Mapping):
        raise ConfigError("must be a dict of architecture genes", key="model.arch", value=arch)
    genes = dict(arch) if arch is not None else {k: v for k, v in vit_space.largest().items()
                                                  if not k.startswith("share.")}
    sharing = sorted(k for k in genes if k.startswith("share."))
    if sharing:
        raise ConfigError("architecture genes only: every task network is separate", key=f"model.arch.{sharing[0]}")
    supernet = build_supernet(vit_space, drop_path_rate=drop_path_rate)
    try:
        supernet.set_arch(genes)
    except ArchError as exc:
        raise ConfigError(str(exc), key="model.arch", value=genes) from exc
    return MultiTaskViTMVT({t: cast(ViTMVTNet, export_subnet(supernet, task=t)) for t in names})
