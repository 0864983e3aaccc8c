"""Static description of a ViT-MVT space and of one parsed architecture."""
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


@dataclass(frozen=True)
class SpaceConfig:
    """Choices of one ViT-MVT space: depth, embedding width, heads and MLP ratio per layer."""

    name: str
    depths: tuple[int, ...]
    embeds: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...] = (3.0, 3.5, 4.0)
    img_size: int = 224

    def __post_init__(self) -> None:
        for attr in ("depths", "embeds", "heads", "mlp_ratios"):
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

    @property
    def max_depth(self) -> int:
        """The supernet depth (the largest depth choice)."""
        return self.depths[-1]

    @property
    def grid(self) -> int:
        """Side of the token grid at the space's image size."""
        return self.img_size // STRIDE


#: the three spaces of the paper (DESIGN §3)
PRESETS: dict[str, SpaceConfig] = {
    "tiny": SpaceConfig("tiny", depths=(12, 13, 14), embeds=(192, 216, 240), heads=(3, 4)),
    "small": SpaceConfig("small", depths=(12, 13, 14), embeds=(320, 384, 448), heads=(5, 6, 7)),
    "base": SpaceConfig("base", depths=(14, 15, 16), embeds=(528, 576, 624), heads=(9, 10)),
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

    @property
    def hidden(self) -> tuple[int, ...]:
        """FFN hidden width per layer (``embed · ratio``, an integer by construction)."""
        return tuple(int(self.embed * r) for r in self.ratios)

    def shared(self, layer: int, linear: str, task: str) -> bool:
        """Whether ``task`` uses the shared weight of ``linear`` in ``layer`` (default: yes)."""
        return self.sharing.get((layer, linear, task), True)
