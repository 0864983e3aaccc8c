"""Import every automtl OpenMMLab part so that it registers itself (configs' ``custom_imports``)."""
from __future__ import annotations

import importlib

from automtl.mm.safe_load import allow_mmengine_checkpoints
from automtl.mm.scopes import require_mm

#: modules whose import registers parts in the mmpretrain / mmdet / mmseg scopes
PART_MODULES: tuple[str, ...] = ("automtl.mm.backbones", "automtl.mm.necks", "automtl.mm.det_tta",
                                  "automtl.mm.multitask", "automtl.mm.shared_backbone",
                                  "automtl.mm.compact_backbone", "automtl.mm.branched_backbone",
                                  "automtl.mm.mixed_data", "automtl.mm.mt_metric")

require_mm()
allow_mmengine_checkpoints()
for _module in PART_MODULES:
    importlib.import_module(_module)
