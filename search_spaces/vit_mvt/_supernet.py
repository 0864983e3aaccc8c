"""The elastic ViT-MVT supernet: weight entanglement (leading slices of the largest weights)
and layer-adaptive sharing of the qkv / proj / fc1 / fc2 linears across tasks.

A block's FFN half is the locality FFN, a plain MLP (``dense``, the same fc1/fc2 without the
depthwise convolution) or an M3ViT mixture of experts (``moe``, :class:`~._moe.MoEFFN`),
as the space's ``ffn`` genes say. ``forward_all`` runs the blocks every task computes alike
(no MoE layer yet, every linear fixed to its shared weight) once for all tasks.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.errors import ArchError, UnknownTaskError

from . import _genes as G
from . import _ops as O
from ._checkpoint import CheckedLoad
from ._config import HEAD_DIM, LINEARS, PATCH, SE_REDUCTION, STEM_CHANNELS, Arch, MoESettings
from ._moe import MoEFFN, accumulating, reset_auxiliary
from ._plain import Stem, head_forward, resolve_indices
from ._space import ViTMVTSpace


def _trunc(*shape: int) -> nn.Parameter:
    w = torch.empty(*shape)
    nn.init.trunc_normal_(w, std=0.02)
    return nn.Parameter(w)


class _StraightThroughSelect(torch.autograd.Function):
    """Forward: the shared tensor where ``score > 0.5``, else the task tensor (a hard choice).
    Backward: the straight-through gradient of ``g·shared + (1-g)·task`` with ``dg/ds = 1``.

    On CPU the choice is read on the host (no arithmetic on the weights); on an accelerator
    it stays on the device (``torch.where``) so the step never waits for a host sync.
    """

    @staticmethod
    def forward(ctx: Any, score: Tensor, shared: Tensor, task: Tensor) -> Tensor:  # type: ignore[override]
        gate = score > 0.5
        ctx.save_for_backward(shared, task, gate)
        if score.device.type == "cpu":
            return (shared if bool(gate) else task).contiguous().view_as(shared)
        return torch.where(gate, shared, task)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:  # type: ignore[override]
        shared, task, gate = ctx.saved_tensors
        g_score = torch.dot(grad.reshape(-1), (shared - task).reshape(-1)).to(gate.device)
        if gate.device.type == "cpu":
            return (g_score, grad, None) if bool(gate) else (g_score, None, grad)
        g = gate.to(grad.dtype)
        return g_score, grad * g, grad * (1 - g)


class AdaptiveLinear(nn.Module):
    """A linear layer with a shared weight, per-task weights and per-task sharing scores.

    A task uses the shared weight where its score is above 0.5 and its own weight below; the
    choice is a hard gate with a straight-through gradient, so the score learns. A fixed
    decision (``mode``) replaces the score when a candidate's sharing genes are evaluated.
    Every elastic width is a leading slice (the qkv rows are laid out (heads, 3, 64)).
    """

    def __init__(self, in_max: int, out_max: int, tasks: Sequence[str], *,
                 score_init: float = 1.0) -> None:
        super().__init__()
        self.in_max, self.out_max = in_max, out_max
        self.tasks = tuple(tasks)
        self.weight = _trunc(out_max, in_max)
        self.bias = nn.Parameter(torch.zeros(out_max))
        self.multi = len(self.tasks) > 1
        if self.multi:
            self.task_weight = nn.ParameterDict(
                {t: nn.Parameter(self.weight.detach().clone()) for t in self.tasks})
            self.task_bias = nn.ParameterDict({t: nn.Parameter(torch.zeros(out_max)) for t in self.tasks})
            self.score = nn.ParameterDict({t: nn.Parameter(torch.tensor(float(score_init)))
                                           for t in self.tasks})
        self.in_n, self.out_n = in_max, out_max
        #: fixed decision per task (True shared / False specific); absent = learned score
        self.mode: dict[str, bool] = {}

    def configure(self, in_n: int, out_n: int, mode: Mapping[str, bool]) -> None:
        """Activate the leading ``out_n × in_n`` slice and the sharing decisions."""
        self.in_n, self.out_n, self.mode = in_n, out_n, dict(mode)

    def _slice(self, w: Tensor, b: Tensor, *, view: bool = False) -> tuple[Tensor, Tensor]:
        o, i = self.out_n, self.in_n
        if o == self.out_max and i == self.in_max:
            return w, b
        w = w[:o, :i]
        # CPU: contiguous, so the GEMM equals the exported model's bit for bit; under CUDA
        # autocast the bf16 cast makes its own contiguous copy anyway
        return (w.contiguous() if w.device.type == "cpu" and not view else w), b[:o]

    def decision(self, task: str) -> bool:
        """Whether ``task`` currently uses the shared weight."""
        if not self.multi:
            return True
        if task in self.mode:
            return self.mode[task]
        return bool(self.score[task].detach() > 0.5)

    def params(self, task: str) -> tuple[Tensor, Tensor]:
        """The (weight, bias) that ``task`` uses for the active width."""
        if not self.multi or self.mode.get(task) is True:
            return self._slice(self.weight, self.bias)
        if self.mode.get(task) is False:
            return self._slice(self.task_weight[task], self.task_bias[task])
        s = self.score[task]
        ws, bs = self._slice(self.weight, self.bias, view=True)
        wt, bt = self._slice(self.task_weight[task], self.task_bias[task], view=True)
        return _StraightThroughSelect.apply(s, ws, wt), _StraightThroughSelect.apply(s, bs, bt)

    def export(self, task: str | None) -> nn.Linear:
        """A plain ``nn.Linear`` holding the active slice of the shared (``None``) or task weight."""
        w, b = (self.weight, self.bias) if task is None else (self.task_weight[task], self.task_bias[task])
        w, b = self._slice(w.detach(), b.detach())
        lin = nn.Linear(self.in_n, self.out_n, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        return lin


class ElasticBlock(nn.Module):
    """One ViT-MVT block at its largest size; ``configure`` picks the active widths and FFN kind.

    ``kinds``: the FFN kinds the block may take; it holds fc1/fc2 for ``dense`` and
    ``locality``, the depthwise convolution for ``locality`` and an elastic
    :class:`~._moe.MoEFFN` (``experts_max`` experts of width ``moe_hidden``) for ``moe``.
    """

    def __init__(self, e_max: int, h_max: int, hid_max: int, grid: int, tasks: Sequence[str], *,
                 drop_path: float = 0.0, score_init: float = 1.0,
                 kinds: Sequence[str] = ("locality",), moe_hidden: int = 0, experts_max: int = 0,
                 top_k: int = 1, moe_settings: MoESettings | None = None,
                 name: str = "moe_balance") -> None:
        super().__init__()
        r_max = e_max // SE_REDUCTION
        self.grid, self.drop_path = grid, drop_path
        self.kinds = tuple(kinds)
        self.lpu_w, self.lpu_b = _trunc(e_max, 1, 3, 3), nn.Parameter(torch.zeros(e_max))
        self.norm1_w, self.norm1_b = nn.Parameter(torch.ones(e_max)), nn.Parameter(torch.zeros(e_max))
        self.qkv = AdaptiveLinear(e_max, 3 * HEAD_DIM * h_max, tasks, score_init=score_init)
        self.rel_table = _trunc((2 * grid - 1) ** 2, h_max)
        self.proj = AdaptiveLinear(HEAD_DIM * h_max, e_max, tasks, score_init=score_init)
        self.se1_w, self.se1_b = _trunc(r_max, e_max), nn.Parameter(torch.zeros(r_max))
        self.se2_w, self.se2_b = _trunc(e_max, r_max), nn.Parameter(torch.zeros(e_max))
        self.norm2_w, self.norm2_b = nn.Parameter(torch.ones(e_max)), nn.Parameter(torch.zeros(e_max))
        self.fc1: AdaptiveLinear | None = None
        self.fc2: AdaptiveLinear | None = None
        if any(k != "moe" for k in self.kinds):
            self.fc1 = AdaptiveLinear(e_max, hid_max, tasks, score_init=score_init)
        if "locality" in self.kinds:
            self.dw_w, self.dw_b = _trunc(hid_max, 1, 3, 3), nn.Parameter(torch.zeros(hid_max))
        if self.fc1 is not None:
            self.fc2 = AdaptiveLinear(hid_max, e_max, tasks, score_init=score_init)
        self.moe: MoEFFN | None = None
        if "moe" in self.kinds:
            self.moe = MoEFFN(e_max, moe_hidden, experts_max, top_k, tasks, moe_settings, name=name)
        self.embed, self.heads, self.hidden = e_max, h_max, hid_max
        self.kind = self.kinds[-1] if "locality" not in self.kinds else "locality"

    def linears(self) -> dict[str, AdaptiveLinear]:
        """The adaptive linears by name (fc1/fc2 only where a dense or locality FFN exists)."""
        out = {"qkv": self.qkv, "proj": self.proj}
        if self.fc1 is not None and self.fc2 is not None:
            out.update(fc1=self.fc1, fc2=self.fc2)
        return out

    def active_linears(self) -> dict[str, AdaptiveLinear]:
        """The adaptive linears the active FFN kind uses."""
        lins = self.linears()
        return lins if self.kind != "moe" else {"qkv": lins["qkv"], "proj": lins["proj"]}

    def _ffn(self, name: str) -> AdaptiveLinear:
        lin = self.fc1 if name == "fc1" else self.fc2
        if lin is None:
            raise ArchError(f"this block has no {name}; its FFN kinds are {list(self.kinds)}",
                            key="ffn")
        return lin

    def configure(self, embed: int, heads: int, hidden: int,
                  modes: Mapping[str, Mapping[str, bool]], *, kind: str = "locality",
                  experts: int = 0, top_k: int = 0) -> None:
        """Activate widths, the FFN kind and the per-linear sharing decisions
        (``{linear: {task: shared}}``); ``hidden`` is one expert's width for an MoE layer."""
        if kind not in self.kinds:
            raise ArchError(f"FFN kind {kind!r} not among this block's {list(self.kinds)}",
                            key="ffn", value=kind)
        self.embed, self.heads, self.hidden, self.kind = embed, heads, hidden, kind
        q = HEAD_DIM * heads
        self.qkv.configure(embed, 3 * q, modes.get("qkv", {}))
        self.proj.configure(q, embed, modes.get("proj", {}))
        if kind == "moe":
            assert self.moe is not None  # "moe" in kinds
            self.moe.configure(embed, hidden, experts, top_k)
            return
        self._ffn("fc1").configure(embed, hidden, modes.get("fc1", {}))
        self._ffn("fc2").configure(hidden, embed, modes.get("fc2", {}))

    def task_invariant(self, tasks: Sequence[str]) -> bool:
        """Whether every task computes this block alike (no MoE; each active linear fixed to
        its shared weight for every task)."""
        if self.kind == "moe":
            return False
        return all(not lin.multi or all(lin.mode.get(t) is True for t in tasks)
                   for lin in self.active_linears().values())

    def _se(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        e, r = self.embed, self.embed // SE_REDUCTION
        w1, w2 = self.se1_w[:r, :e], self.se2_w[:e, :r]
        if w1.device.type == "cpu":
            w1, w2 = w1.contiguous(), w2.contiguous()
        return w1, self.se1_b[:r], w2, self.se2_b[:e]

    def forward(self, x: Tensor, hw: tuple[int, int], task: str) -> Tensor:
        e, hid = self.embed, self.hidden
        x = x + O.dwconv(x, hw, self.lpu_w[:e], self.lpu_b[:e])
        y = F.layer_norm(x, (e,), self.norm1_w[:e], self.norm1_b[:e], O.LN_EPS)
        bias = O.relative_bias(self.rel_table[:, : self.heads], self.grid, hw)
        y = O.attention(y, *self.qkv.params(task), *self.proj.params(task), bias)
        x = x + O.drop_path(O.mhse(y, *self._se()), self.drop_path, self.training)
        y = F.layer_norm(x, (e,), self.norm2_w[:e], self.norm2_b[:e], O.LN_EPS)
        if self.kind == "moe":
            assert self.moe is not None  # configure checked the kind
            y = self.moe(y, task)
        elif self.kind == "dense":
            y = O.dense_ffn(y, *self._ffn("fc1").params(task), *self._ffn("fc2").params(task))
        else:
            y = O.locality_ffn(y, hw, *self._ffn("fc1").params(task), self.dw_w[:hid],
                               self.dw_b[:hid], *self._ffn("fc2").params(task))
        return x + O.drop_path(y, self.drop_path, self.training)


class ViTMVTSupernet(CheckedLoad, nn.Module):
    """The largest network of a :class:`ViTMVTSpace`; ``set_arch`` selects the active subnet.

    Example::

        space = build_space("tiny")
        net = build_supernet(space)
        net.set_arch(space.sample(random.Random(0)))
        out = net.forward_all(torch.randn(2, 3, 224, 224))   # {"cls": (2, 1000), "seg": …}
    """

    def __init__(self, space: ViTMVTSpace, *, drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (-1,), score_init: float = 1.0) -> None:
        super().__init__()
        cfg = space.cfg
        self.space = space
        self.tasks = space.tasks
        self.out_indices = tuple(out_indices)
        e_max, g, n = cfg.embeds[-1], cfg.grid, cfg.max_depth
        hid_max = int(e_max * cfg.mlp_ratios[-1])
        self.stem = Stem()
        self.patch_w = nn.Parameter(torch.empty(e_max, STEM_CHANNELS, PATCH, PATCH))
        nn.init.kaiming_normal_(self.patch_w, mode="fan_out")
        self.patch_b = nn.Parameter(torch.zeros(e_max))
        self.pos = _trunc(1, e_max, g, g)
        self.blocks = nn.ModuleList(
            ElasticBlock(e_max, cfg.heads[-1], hid_max, g, self.tasks,
                         drop_path=drop_path_rate * i / max(n - 1, 1), score_init=score_init,
                         kinds=cfg.layer_kinds(i), moe_hidden=cfg.moe_hidden(e_max),
                         experts_max=cfg.num_experts[-1], top_k=cfg.top_ks[0], moe_settings=cfg.moe,
                         name=f"moe_balance.block{i}")
            for i in range(n))
        self._moe_layers = [m for b in self.blocks if (m := cast(ElasticBlock, b).moe) is not None]
        self.norm_w, self.norm_b = nn.Parameter(torch.ones(e_max)), nn.Parameter(torch.zeros(e_max))
        self.head_w = nn.ParameterDict({t: _trunc(space.num_outputs[t], e_max) for t in self.tasks})
        self.head_b = nn.ParameterDict({t: nn.Parameter(torch.zeros(space.num_outputs[t]))
                                        for t in self.tasks})
        self.arch: Arch
        self.fixed_sharing = False
        self.set_arch(space.largest() if not space.multi else
                      {k: v for k, v in space.largest().items() if not k.startswith("share.")})

    def block(self, i: int) -> ElasticBlock:
        """Block ``i`` (``blocks`` holds ElasticBlocks only)."""
        return cast(ElasticBlock, self.blocks[i])

    # ---------------------------------------------------------------- arch selection
    def set_arch(self, arch: Mapping[str, Any], sharing: Mapping[str, Any] | None = None) -> None:
        """Activate a subnet.

        Sharing genes (in ``arch`` or ``sharing``) fix each task's choice; when none is given
        the learned scores decide (score > 0.5 → shared).
        """
        genes = {**arch, **(sharing or {})}
        parsed = self.space.parse(genes)
        self.fixed_sharing = any(k.startswith("share.") for k in genes)
        self.arch_input = genes  # what was asked for (restored after an export)
        hidden = parsed.hidden
        for i in range(parsed.depth):
            modes: dict[str, dict[str, bool]] = {lin: {} for lin in LINEARS}
            if self.fixed_sharing:
                for lin in LINEARS:
                    for t in self.tasks:
                        modes[lin][t] = parsed.shared(i, lin, t)
            self.block(i).configure(parsed.embed, parsed.heads[i], hidden[i], modes,
                                    kind=parsed.kind(i),
                                    experts=parsed.experts[i] if parsed.ffn else 0,
                                    top_k=parsed.top_k[i] if parsed.ffn else 0)
        self.arch = parsed

    def arch_genes(self) -> dict[str, Any]:
        """The active architecture and sharing decisions as a candidate dict."""
        return G.to_genes(self._with_decisions(self.arch), self.tasks)

    def _with_decisions(self, arch: Arch) -> Arch:
        sharing = {(i, lin, t): layer.decision(t)
                   for i in range(arch.depth) for lin, layer in self.block(i).active_linears().items()
                   for t in self.tasks}
        return dataclasses.replace(arch, sharing=sharing)

    def sharing_report(self) -> dict[str, str]:
        """Per active layer, linear and task: ``"shared"`` or ``"specific"`` (sharing genes)."""
        return {k: v for k, v in self.arch_genes().items() if k.startswith("share.")}

    # ---------------------------------------------------------------- forward
    def _task(self, task: str | None) -> str:
        if task is None:
            if len(self.tasks) == 1:
                return self.tasks[0]
            raise UnknownTaskError(f"pass task= one of {list(self.tasks)} or call forward_all")
        if task not in self.tasks:
            raise UnknownTaskError(f"unknown task {task!r}; the supernet has {list(self.tasks)}")
        return task

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Stem, elastic patch convolution and position embedding → tokens and grid size."""
        e = self.arch.embed
        return O.patch_embed(self.stem(x), self.patch_w[:e], self.patch_b[:e], self.pos[:, :e])

    def moe_layers(self) -> list[MoEFFN]:
        """The MoE layers of the active subnet, in depth order."""
        return [m for i in range(self.arch.depth) if self.block(i).kind == "moe"
                and (m := self.block(i).moe) is not None]

    def forward_features(self, x: Tensor, task: str | None = None,
                         out_indices: Sequence[int] | None = None) -> list[Tensor]:
        """2-D maps (B, E, h, w) after the chosen blocks of the active subnet."""
        task = self._task(task)
        reset_auxiliary(self._moe_layers)
        idx = resolve_indices(self.out_indices if out_indices is None else out_indices,
                              self.arch.depth)
        t, hw = self.embed(x)
        maps = {}
        for i in range(self.arch.depth):
            t = self.blocks[i](t, hw, task)
            if i in idx:
                maps[i] = O.tokens_to_map(t, hw)
        return [maps[i] for i in idx]

    def forward(self, x: Tensor, task: str | None = None) -> Tensor:
        """The output of ``task`` (may be omitted for a single-task supernet)."""
        task = self._task(task)
        reset_auxiliary(self._moe_layers)
        t, hw = self.embed(x)
        return self._finish(t, hw, 0, task, (x.shape[-2], x.shape[-1]))

    def _finish(self, t: Tensor, hw: tuple[int, int], start: int, task: str,
                size: tuple[int, int]) -> Tensor:
        """Blocks ``start…depth-1``, the final norm and ``task``'s head."""
        for i in range(start, self.arch.depth):
            t = self.blocks[i](t, hw, task)
        e = self.arch.embed
        t = F.layer_norm(t, (e,), self.norm_w[:e], self.norm_b[:e], O.LN_EPS)
        w = self.head_w[task][:, :e]
        return head_forward(self.space.head_kinds[task], t, hw, size, w.contiguous(),
                            self.head_b[task])

    def shared_prefix(self) -> int:
        """How many leading blocks every task computes alike (before the first MoE layer,
        with every linear fixed to its shared weight): ``forward_all`` runs them once."""
        n = 0
        while n < self.arch.depth and self.block(n).task_invariant(self.tasks):
            n += 1
        return n

    def forward_all(self, x: Tensor) -> dict[str, Tensor]:
        """``{task: output}`` for every task (each task runs with its own sharing gates and
        routers); the embedding and the shared prefix of blocks run once. The MoE layers'
        balance losses add up over the tasks."""
        with accumulating(self._moe_layers):
            t, hw = self.embed(x)
            prefix = self.shared_prefix()
            for i in range(prefix):
                t = self.blocks[i](t, hw, self.tasks[0])
            size = (x.shape[-2], x.shape[-1])
            return {task: self._finish(t, hw, prefix, task, size) for task in self.tasks}


def build_supernet(space: ViTMVTSpace, tasks: Sequence[str] | None = None, *,
                   num_outputs: Mapping[str, int] | None = None, **kw: Any) -> ViTMVTSupernet:
    """The supernet of ``space``, optionally serving another task list (``num_outputs`` sizes
    new tasks' heads); ``kw`` go to :class:`ViTMVTSupernet` (``drop_path_rate``,
    ``out_indices``, ``score_init``)."""
    if tasks is not None and tuple(tasks) != space.tasks or num_outputs:
        tasks = space.tasks if tasks is None else tuple(tasks)
        outputs = {t: n for t, n in space.num_outputs.items() if t in tasks}
        outputs.update(num_outputs or {})
        kinds = {t: k for t, k in space.head_kinds.items() if t in tasks}
        space = ViTMVTSpace(space.cfg, tasks, num_outputs=outputs, head_kinds=kinds)
    return ViTMVTSupernet(space, **kw)


