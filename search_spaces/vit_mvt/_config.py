"""Static description of a ViT-MVT space and of one parsed architecture.

A block's feed-forward half is one of three kinds: ``"locality"`` (ViT-MVT's FFN with a
depthwise convolution, the default and the only kind of the released spaces), ``"dense"`` (a
plain Linear → GELU → Linear MLP) or ``"moe"`` (M3ViT's task-routed mixture of experts,
:class:`MoESettings`). Spaces that offer more than the locality FFN carry ``ffn.<i>`` genes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from automtl.errors import ConfigError

#: head dimension of every attention head (qkv width = 3 · 64 · heads)
HEAD_DIM = 64
#: channels of the convolutional stem
STEM_CHANNELS = 64
#: side of the patch convolution after the stride-2 stem (total stride 16)
PATCH = 8
#: total stride of stem + patch convolution
STRIDE = 16
#: reduction of the squeeze-and-excitation over the attention output (MHSE)
SE_REDUCTION = 8
#: the adaptive (shareable) linears of a block, in forward order
LINEARS = ("qkv", "proj", "fc1", "fc2")
#: values of a sharing gene
SHARED, SPECIFIC = "shared", "specific"

#: default output sizes of well-known task names
DEFAULT_OUTPUTS = {"cls": 1000, "seg": 150, "depth": 1, "normal": 3, "edge": 1, "det": 80}

#: kinds of a block's feed-forward half (plain MLP, ViT-MVT's locality FFN, mixture of experts)
FFN_KINDS = ("dense", "locality", "moe")
#: M3ViT's two router designs: one gate per task, or one gate fed the token and a task embedding
ROUTERS = ("multi_gate", "task_conditioned")
#: task embeddings of the task-conditioned router
TASK_EMBEDS = ("onehot", "dense")
#: what ``count_params`` reports: stored parameters, or those one token of a task touches
BUDGETS = ("total", "active")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class MoESettings:
    """Routing and training of a space's mixture-of-experts layers (M3ViT's defaults).

    ``noise_std``: training noise of std ``noise_std / E`` on the router logits (0 disables);
    ``renormalize``: rescale the kept top-k probabilities to sum to one (M3ViT does not);
    ``aux_weight``: weight of each layer's cv²(importance) + cv²(load) balance loss;
    ``capacity_factor``: each expert takes at most ``ceil(cf · tokens · k / E)`` routes per
    forward (the rest are dropped and counted), ``None`` for no limit.
    """

    router: str = "multi_gate"
    task_embed: str = "onehot"
    task_embed_dim: int = 32
    noise_std: float = 1.0
    renormalize: bool = False
    aux_weight: float = 0.01
    capacity_factor: float | None = None

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise ConfigError(f"unknown router; expected one of {list(ROUTERS)}", key="moe.router",
                              value=self.router)
        if self.task_embed not in TASK_EMBEDS:
            raise ConfigError(f"unknown task embedding; expected one of {list(TASK_EMBEDS)}",
                              key="moe.task_embed", value=self.task_embed)
        if not isinstance(self.task_embed_dim, int) or isinstance(self.task_embed_dim, bool) \
                or self.task_embed_dim < 1:
            raise ConfigError("must be a positive integer", key="moe.task_embed_dim",
                              value=self.task_embed_dim)
        for key in ("noise_std", "aux_weight"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0 or v == float("inf"):
                raise ConfigError("must be a finite number >= 0", key=f"moe.{key}", value=v)
        if not isinstance(self.renormalize, bool):
            raise ConfigError("must be True or False", key="moe.renormalize", value=self.renormalize)
        if self.capacity_factor is not None and not (_positive(self.capacity_factor)
                                                     and self.capacity_factor != float("inf")):
            raise ConfigError("must be a finite number > 0 or None", key="moe.capacity_factor",
                              value=self.capacity_factor)

    def task_inputs(self, n_tasks: int) -> int:
        """Extra router inputs besides the token: the task embedding's width (0 for multi-gate)."""
        if self.router == "multi_gate":
            return 0
        return n_tasks if self.task_embed == "onehot" else self.task_embed_dim


@dataclass(frozen=True)
class SpaceConfig:
    """Choices of one ViT-MVT space: depth, embedding width, heads and MLP ratio per layer."""

    name: str
    depths: tuple[int, ...]
    embeds: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...] = (3.0, 3.5, 4.0)
    img_size: int = 224
    #: FFN kinds a block may take (``ffn.<i>`` genes unless only ``"locality"``)
    ffn_kinds: tuple[str, ...] = ("locality",)
    #: a fixed kind per layer of the supernet (e.g. M3ViT's MoE in every other block)
    ffn_layout: tuple[str, ...] | None = None
    #: choices of the number of experts and of top-k of an MoE layer
    num_experts: tuple[int, ...] = (16,)
    top_ks: tuple[int, ...] = (4,)
    #: hidden width of each expert as a multiple of the embedding width
    moe_mlp_ratio: float = 1.0
    moe: MoESettings = field(default_factory=MoESettings)
    #: what ``count_params`` reports (``"active"``: the parameters a task's token touches)
    budget: str = "total"

    def __post_init__(self) -> None:
        for attr in ("depths", "embeds", "heads", "mlp_ratios", "num_experts", "top_ks"):
            values = getattr(self, attr)
            if not values or list(values) != sorted(set(values)):
                raise ConfigError("must be a non-empty, strictly increasing tuple", key=attr)
        if self.img_size % STRIDE:
            raise ConfigError(f"must be a multiple of {STRIDE}", key="img_size")
        for e in self.embeds:
            if e % SE_REDUCTION:
                raise ConfigError(f"embedding width {e} is not a multiple of {SE_REDUCTION}",
                                  key="embeds")
            for r in self.mlp_ratios:
                if float(e * r) != int(e * r):
                    raise ConfigError(f"width {e} x ratio {r} is not an integer", key="mlp_ratios")
        self._check_ffn()

    def _check_ffn(self) -> None:
        kinds = self.ffn_kinds
        if not kinds or len(set(kinds)) != len(kinds) or any(k not in FFN_KINDS for k in kinds):
            raise ConfigError(f"must be distinct kinds out of {list(FFN_KINDS)}", key="ffn_kinds",
                              value=kinds)
        if self.ffn_layout is not None:
            if len(self.ffn_layout) != self.max_depth or any(k not in kinds for k in self.ffn_layout):
                raise ConfigError(f"must give one of {list(kinds)} for each of the "
                                  f"{self.max_depth} layers", key="ffn_layout", value=self.ffn_layout)
        for attr in ("num_experts", "top_ks"):
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in getattr(self, attr)):
                raise ConfigError("choices must be positive integers", key=attr, value=getattr(self, attr))
        if self.top_ks[0] > self.num_experts[0]:
            raise ConfigError(f"top-k {self.top_ks[0]} > {self.num_experts[0]} experts: no valid "
                              "MoE layer with the fewest experts", key="top_ks", value=self.top_ks)
        if not _positive(self.moe_mlp_ratio):
            raise ConfigError("must be a number > 0", key="moe_mlp_ratio", value=self.moe_mlp_ratio)
        for e in self.embeds:
            if "moe" in kinds and float(e * self.moe_mlp_ratio) != int(e * self.moe_mlp_ratio):
                raise ConfigError(f"width {e} x ratio {self.moe_mlp_ratio} is not an integer",
                                  key="moe_mlp_ratio")
        if not isinstance(self.moe, MoESettings):
            raise ConfigError("must be a MoESettings", key="moe", value=self.moe)
        if self.budget not in BUDGETS:
            raise ConfigError(f"must be one of {list(BUDGETS)}", key="budget", value=self.budget)

    @property
    def has_ffn_genes(self) -> bool:
        """Whether candidates carry ``ffn.<i>`` genes (anything beyond the locality FFN)."""
        return self.ffn_kinds != ("locality",) or self.ffn_layout is not None

    def layer_kinds(self, i: int) -> tuple[str, ...]:
        """The FFN kinds layer ``i`` may take."""
        return (self.ffn_layout[i],) if self.ffn_layout is not None else self.ffn_kinds

    def moe_hidden(self, embed: int) -> int:
        """Hidden width of one expert at embedding width ``embed``."""
        return int(embed * self.moe_mlp_ratio)

    @property
    def max_depth(self) -> int:
        """The supernet depth (the largest depth choice)."""
        return self.depths[-1]

    @property
    def grid(self) -> int:
        """Side of the token grid at the space's image size."""
        return self.img_size // STRIDE


#: M3ViT's placement: the MLP of every other block (1, 3, 5, …) becomes a mixture of experts
_EVERY_OTHER = ("dense", "moe") * 6

#: the three spaces of the paper (DESIGN §3), and two single-architecture MoE spaces:
#: M3ViT's published ViT-S (d 384, 12 blocks, 16 experts, top-4, expert ratio 1, multi-gate,
#: aux weight 0.01) and the Edge-MoE tiny setting (ViT-T, 16 experts, top-2, expert hidden 384).
#: Their blocks are ViT-MVT blocks (convolutional stem, LPU, relative bias, MHSE) whose FFN
#: half is M3ViT's: a plain MLP (ratio 4) or the MoE layer.
PRESETS: dict[str, SpaceConfig] = {
    "tiny": SpaceConfig("tiny", depths=(12, 13, 14), embeds=(192, 216, 240), heads=(3, 4)),
    "small": SpaceConfig("small", depths=(12, 13, 14), embeds=(320, 384, 448), heads=(5, 6, 7)),
    "base": SpaceConfig("base", depths=(14, 15, 16), embeds=(528, 576, 624), heads=(9, 10)),
    "m3vit_small": SpaceConfig("m3vit_small", depths=(12,), embeds=(384,), heads=(6,),
                               mlp_ratios=(4.0,), ffn_kinds=("dense", "moe"), ffn_layout=_EVERY_OTHER,
                               num_experts=(16,), top_ks=(4,), moe_mlp_ratio=1.0,
                               moe=MoESettings(router="multi_gate", aux_weight=0.01)),
    "edge_moe_tiny": SpaceConfig("edge_moe_tiny", depths=(12,), embeds=(192,), heads=(3,),
                                 mlp_ratios=(4.0,), ffn_kinds=("dense", "moe"), ffn_layout=_EVERY_OTHER,
                                 num_experts=(16,), top_ks=(2,), moe_mlp_ratio=2.0,
                                 moe=MoESettings(router="multi_gate", aux_weight=0.01)),
}


@dataclass(frozen=True)
class Arch:
    """One architecture, parsed from genes: width, depth, and heads / MLP width per layer."""

    embed: int
    depth: int
    heads: tuple[int, ...]
    ratios: tuple[float, ...]
    #: per layer, per linear, per task: True = shared weight (empty for a single task)
    sharing: dict[tuple[int, str, str], bool] = field(default_factory=dict, compare=False)
    #: FFN kind per layer (empty: every layer has the locality FFN, the released spaces)
    ffn: tuple[str, ...] = ()
    #: per layer, the number of experts and top-k of an MoE layer (0 for other kinds)
    experts: tuple[int, ...] = ()
    top_k: tuple[int, ...] = ()

    @property
    def hidden(self) -> tuple[int, ...]:
        """FFN hidden width per layer (``embed · ratio``, an integer by construction); for an
        MoE layer the hidden width of one expert."""
        return tuple(int(self.embed * r) for r in self.ratios)

    def kind(self, layer: int) -> str:
        """The FFN kind of ``layer``."""
        return self.ffn[layer] if self.ffn else "locality"

    def moe_layers(self) -> list[int]:
        """Indices of the MoE layers."""
        return [i for i in range(self.depth) if self.kind(i) == "moe"]

    def shared(self, layer: int, linear: str, task: str) -> bool:
        """Whether ``task`` uses the shared weight of ``linear`` in ``layer`` (default: yes)."""
        return self.sharing.get((layer, linear, task), True)
