"""Search spaces: the protocol (:class:`SearchSpace`, :class:`SupernetSpace`) and the built-in
spaces, the toy :class:`LayeredToySpace` (known optimum) and the AutoMTL
:class:`PolicySearchSpace`. ViT-MVT lives in ``search_spaces.vit_mvt`` and implements the same
protocol. Spaces are built from configs through :data:`automtl.registry.SPACES`.

Names resolve lazily, so importing the protocol imports neither torch nor the supernet.
"""
from __future__ import annotations

from automtl._lazy import lazy_exports

_EXPORTS = {
    "Candidate": "automtl.spaces.base", "SearchSpace": "automtl.spaces.base",
    "SupernetSpace": "automtl.spaces.base",
    "LayeredToySpace": "automtl.spaces.toy",
    "PolicySearchSpace": "automtl.spaces.policy", "build_policy_space": "automtl.spaces.policy",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
