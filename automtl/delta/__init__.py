"""Delta sharing: a sub-task's layers as sparse deltas on a base task's (``W_task = W_base + ΔW``).

After Shoouri et al., "Efficient Computation Sharing for Multi-Task Visual Scene Understanding":
ΔW is learnt with hard-concrete L0 gates (:mod:`.masks`, :mod:`.weights`), its support is then
fixed at a target density (:mod:`.support`), and delta activations ``x_task − x_base`` are made
sparse by an L1 penalty and zeroed below a threshold at inference (:mod:`.layers`, sparse CPU
kernels in :mod:`.kernels`). The AutoMTL supernet offers ``delta`` as a per-layer choice
(``automtl.supernet``); :mod:`.wrap` puts deltas on any network from outside (ViT blocks).
"""
from automtl.delta.layers import DeltaConv2d, DeltaLayer, DeltaLinear, delta_layer, supports_delta
from automtl.delta.masks import HardConcreteGate
from automtl.delta.support import delta_density, fix_support
from automtl.delta.weights import DEFAULT_THRESHOLD, MODES, WeightDelta, check_density, check_threshold
from automtl.delta.wrap import DeltaNetworks, all_layers, block_projections, delta_context

__all__ = ["DEFAULT_THRESHOLD", "MODES", "DeltaConv2d", "DeltaLayer", "DeltaLinear", "DeltaNetworks",
           "HardConcreteGate", "WeightDelta", "all_layers", "block_projections", "check_density",
           "check_threshold", "delta_context", "delta_density", "delta_layer", "fix_support",
           "supports_delta"]
