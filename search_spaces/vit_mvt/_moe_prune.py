"""Per-task inference of a model with MoE layers (M3ViT): which experts a task selects on
calibration data, a network pruned to them, and a report of experts touched, expert bytes read
and FLOPs per image.

The pruned network keeps each MoE layer's whole router (so the kept experts' gates are
unchanged) and only the experts the task selected; on the calibration data its outputs are
those of the full network. A route to a pruned expert on other data contributes nothing and is
counted (``MoEFFN.last_stats.missed``).

Example::

    net = prune_task_experts(model, "seg", calib_images)     # a plain ViTMVTNet for "seg"
    print(moe_inference_report(model, "seg", calib_images).format())
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from automtl.errors import DataError, ModelError, UnknownTaskError

from ._moe import MoEFFN, TaskRoutedMoE
from ._plain import MultiTaskViTMVT, ViTMVTNet

#: a tensor of images (B, 3, H, W), or an iterable of such tensors or of (images, …) tuples
Calibration = Tensor | Iterable[Any]


def _batches(calibration: Calibration) -> Iterator[Tensor]:
    """The image batches of ``calibration`` (:class:`DataError` for anything else)."""
    items: Iterable[Any] = [calibration] if isinstance(calibration, Tensor) else calibration
    try:
        it = iter(items)
    except TypeError as exc:
        raise DataError(f"calibration data must be an image tensor or an iterable of batches, got "
                        f"{type(calibration).__name__}") from exc
    for item in it:
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise DataError("calibration batches must be (B, 3, H, W) image tensors or (images, …) "
                            f"tuples, got {type(x).__name__}"
                            + (f" of shape {tuple(x.shape)}" if isinstance(x, Tensor) else ""))
        if x.shape[0]:
            yield x


def task_network(model: nn.Module, task: str) -> ViTMVTNet:
    """A plain, independent copy of ``task``'s network: exported from a supernet (its active
    subnet), or copied out of a multi-task or single-task exported model."""
    from ._export import export_subnet
    from ._supernet import ViTMVTSupernet

    if isinstance(model, ViTMVTSupernet):
        net = export_subnet(model, task=task)
        assert isinstance(net, ViTMVTNet)  # export_subnet(task=…) returns one network
        return net
    if isinstance(model, MultiTaskViTMVT):
        return copy.deepcopy(model.task_model(task))
    if isinstance(model, ViTMVTNet):
        return copy.deepcopy(model)
    raise ModelError(f"expected a ViT-MVT supernet or exported model, got {type(model).__name__}")


def _moe_blocks(net: ViTMVTNet) -> list[tuple[int, TaskRoutedMoE]]:
    """``(block index, the task's view of its MoE layer)`` of every MoE block."""
    return [(i, view) for i in range(len(net.blocks)) if (view := net.block(i).moe) is not None]


@dataclass(frozen=True)
class LayerUsage:
    """How one task used one MoE layer over the calibration images."""

    block: int
    experts: int
    top_k: int
    #: router ids of the experts the task selected at least once
    used: tuple[int, ...]
    #: mean number of distinct experts one image's tokens select
    touched_per_image: float
    tokens_per_image: float
    dim: int
    hidden: int
    #: parameters of one expert, and its bytes
    expert_params: int
    expert_bytes: int
    #: router FLOPs per token (2 · dim · experts; a task embedding's share is per image)
    router_flops: int

    @property
    def expert_flops(self) -> int:
        """FLOPs of one expert on one token (two GEMMs, 2 FLOPs per multiply-add)."""
        return 4 * self.dim * self.hidden


def record_usage(net: ViTMVTNet, task: str, calibration: Calibration, *,
                 count_flops: bool = False) -> tuple[list[LayerUsage], int, float]:
    """Run ``net`` (eval mode, no gradients) on ``calibration`` and record each MoE layer's
    routing: ``(usage per layer, images, forward FLOPs per image or 0)``."""
    from torch.utils.flop_counter import FlopCounterMode

    blocks = _moe_blocks(net)
    for _, view in blocks:
        if view.task != task:
            raise UnknownTaskError(f"the network routes for task {view.task!r}, not {task!r}")
    seen: dict[int, list[Tensor]] = {i: [] for i, _ in blocks}
    for i, view in blocks:
        view.moe.recorder = seen[i].append
    was_training = net.training
    images, flops = 0, 0
    counter = FlopCounterMode(display=False) if count_flops else None
    try:
        net.eval()
        with torch.no_grad():
            for x in _batches(calibration):
                if counter is not None:
                    with counter:
                        net(x)
                else:
                    net(x)
                images += x.shape[0]
        if counter is not None:
            flops = counter.get_total_flops()
    finally:
        net.train(was_training)
        for _, view in blocks:
            view.moe.recorder = None
    out = []
    for i, view in blocks:
        moe: MoEFFN = view.moe
        idx = [r.reshape(r.shape[0], -1) for r in seen[i]]          # (B, tokens·k) per batch
        used = sorted({int(e) for r in idx for e in r.unique()})
        touched = sum(int(row.unique().numel()) for r in idx for row in r)
        tokens = sum(r.shape[0] * r.shape[1] for r in idx) / max(images * moe.top_k, 1)
        out.append(LayerUsage(block=i, experts=moe.experts, top_k=moe.top_k, used=tuple(used),
                              touched_per_image=touched / max(images, 1), tokens_per_image=tokens,
                              dim=moe.dim, hidden=moe.hidden, expert_params=moe.expert_params(),
                              expert_bytes=moe.expert_params() * moe.w1.element_size(),
                              router_flops=2 * moe.dim * moe.experts))
    return out, images, flops / max(images, 1)


def prune_task_experts(model: nn.Module, task: str, calibration: Calibration) -> ViTMVTNet:
    """``task``'s plain network keeping, in each MoE layer, only the experts the task selects
    on ``calibration`` (its outputs there are unchanged).

    Raises :class:`DataError` when the calibration data leaves the task with no expert in
    some MoE layer (no images), :class:`UnknownTaskError` for a task the model lacks.
    """
    net = task_network(model, task)
    usage, images, _ = record_usage(net, task, calibration)
    views = dict(_moe_blocks(net))
    for u in usage:
        if not u.used:
            raise DataError(f"the calibration data ({images} images) leaves task {task!r} with no "
                            f"expert in MoE block {u.block}; give it images of that task")
        net.block(u.block).moe = TaskRoutedMoE(views[u.block].moe.prune(u.used, task), task)
    return net


@dataclass(frozen=True)
class MoEReport:
    """Per-task inference of one model in the spirit of M3ViT's accelerator: per MoE layer the
    experts the task keeps and touches per image, the expert bytes read and the FLOPs."""

    task: str
    images: int
    layers: tuple[LayerUsage, ...]
    #: forward FLOPs of the task's whole network per image (torch's FLOP counter)
    flops_per_image: float
    #: stored parameters of the task's network, full and pruned to the used experts
    params: int
    pruned_params: int

    def layer_flops(self, u: LayerUsage, *, all_experts: bool = False) -> float:
        """FLOPs per image of one MoE layer: routing plus the routed experts (or every expert
        on every token when ``all_experts``)."""
        per_token = u.router_flops + (u.experts if all_experts else u.top_k) * u.expert_flops
        return u.tokens_per_image * per_token

    def totals(self) -> dict[str, float]:
        """Sums over the MoE layers per image, and the model-level figures."""
        return {"experts_touched": sum(u.touched_per_image for u in self.layers),
                "experts_kept": sum(len(u.used) for u in self.layers),
                "experts": sum(u.experts for u in self.layers),
                "expert_bytes_read": sum(u.touched_per_image * u.expert_bytes for u in self.layers),
                "moe_flops": sum(self.layer_flops(u) for u in self.layers),
                "moe_flops_all_experts": sum(self.layer_flops(u, all_experts=True) for u in self.layers),
                "model_flops": self.flops_per_image,
                "params": self.params, "pruned_params": self.pruned_params}

    def format(self) -> str:
        """A readable table: one row per MoE layer, then the totals."""
        lines = [f"task {self.task!r}: {self.images} calibration images",
                 f"{'block':>5} {'E':>4} {'k':>3} {'kept':>5} {'touched/img':>12} "
                 f"{'KiB read/img':>13} {'MFLOP/img':>10}"]
        for u in self.layers:
            lines.append(f"{u.block:>5} {u.experts:>4} {u.top_k:>3} {len(u.used):>5} "
                         f"{u.touched_per_image:>12.2f} {u.touched_per_image * u.expert_bytes / 1024:>13.1f} "
                         f"{self.layer_flops(u) / 1e6:>10.2f}")
        t = self.totals()
        lines.append(f"experts kept {t['experts_kept']:.0f}/{t['experts']:.0f}, touched per image "
                     f"{t['experts_touched']:.1f}, expert weights read per image "
                     f"{t['expert_bytes_read'] / 2**20:.2f} MiB; model {t['model_flops'] / 1e9:.3f} "
                     f"GFLOP per image; parameters {self.params:,} -> {self.pruned_params:,} pruned")
        return "\n".join(lines)


def moe_inference_report(model: nn.Module, task: str, calibration: Calibration) -> MoEReport:
    """Run ``task``'s network on ``calibration`` and report its per-image MoE usage."""
    net = task_network(model, task)
    usage, images, flops = record_usage(net, task, calibration, count_flops=True)
    params = sum(p.numel() for p in net.parameters())
    unused = sum((u.experts - len(u.used)) * u.expert_params for u in usage)
    return MoEReport(task=task, images=images, layers=tuple(usage), flops_per_image=flops,
                     params=params, pruned_params=params - unused)

