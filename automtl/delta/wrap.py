"""Delta sharing from outside a network: sub-task networks whose chosen ``nn.Linear`` /
``nn.Conv2d`` layers become sparse deltas on the base task's network.

Nothing inside the networks changes except the replaced layers, so this works on modules that
call their layers (``layer(x)``) and on modules that read ``layer.weight`` and call
``F.linear`` / ``F.conv2d`` themselves (ViT-MVT blocks): during :meth:`DeltaNetworks.forward_all`
a torch-function mode records every base layer's input and output while the base runs, then
routes each delta layer's ``F.linear`` / ``F.conv2d`` to the delta computation on top of them.
Each base layer must run once per forward.

Example::

    from search_spaces.vit_mvt import export_subnet
    multi = export_subnet(supernet, arch)                       # MultiTaskViTMVT
    nets = {t: multi.task_model(t) for t in multi.tasks}
    model = DeltaNetworks(nets, base="seg")                     # qkv / proj / fc1 / fc2 as deltas
    outs = model.forward_all(x)                                 # the base runs once
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from automtl.delta import layers as _layers
from automtl.delta.layers import DeltaLayer, delta_layer, supports_delta
from automtl.delta.weights import WeightDelta
from automtl.errors import ModelError, UnknownTaskError

#: the projections of a transformer block that carry deltas by default
PROJECTIONS = ("qkv", "proj", "fc1", "fc2")

Select = Callable[[str, nn.Module], bool]


def block_projections(name: str, module: nn.Module) -> bool:
    """The attention and MLP projections of every block (``…qkv``, ``…proj``, ``…fc1``, ``…fc2``
    as ``nn.Linear``; squeeze-excitation layers ``….se.…`` excluded)."""
    return isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in PROJECTIONS and ".se." not in f".{name}"


def all_layers(name: str, module: nn.Module) -> bool:
    """Every ``nn.Linear`` and zero-padded ``nn.Conv2d``."""
    return supports_delta(module)


class DeltaContext:
    """One forward of the base and its delta tasks: the base layers' ``(input, output)`` and
    the merged weights handed out by delta layers."""

    def __init__(self, base_layers: Mapping[int, nn.Module]) -> None:
        self.base_layers = dict(base_layers)  # id(weight parameter) -> base layer
        self.phase = "base"
        self.io: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.weights: dict[int, tuple[torch.Tensor, DeltaLayer]] = {}

    def register_weight(self, weight: torch.Tensor, layer: DeltaLayer) -> None:
        """Remember that ``weight`` (a merged weight) belongs to ``layer``."""
        self.weights[id(weight)] = (weight, layer)

    def base_io(self, base: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The recorded input and output of a base layer (``(None, None)`` if it did not run)."""
        hit = self.io.get(id(base))
        return hit if hit is not None else (None, None)


class _Router(TorchFunctionMode):
    """Records base layers and routes delta layers (see the module docstring)."""

    def __init__(self, ctx: DeltaContext) -> None:
        super().__init__()
        self.ctx = ctx

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.linear or func is F.conv2d:
            x = args[0] if args else kwargs.get("input")
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            ctx = self.ctx
            if ctx.phase == "base":
                base = ctx.base_layers.get(id(w))
                if base is not None:
                    y = func(*args, **kwargs)
                    ctx.io[id(base)] = (x, y)
                    return y
            else:
                hit = ctx.weights.get(id(w))
                if hit is not None and hit[0] is w:
                    return hit[1](x)
        return func(*args, **kwargs)


@contextmanager
def delta_context(base_layers: Mapping[int, nn.Module]) -> Iterator[DeltaContext]:
    """Activate a :class:`DeltaContext` (and its torch-function router) for one forward."""
    ctx = DeltaContext(base_layers)
    _layers._CONTEXT.append(ctx)
    try:
        with _Router(ctx):
            yield ctx
    finally:
        _layers._CONTEXT.pop()


class DeltaNetworks(nn.Module):
    """One network per task; every sub-task's selected layers are deltas on the base's.

    Args:
        nets: ``{task: network}``, all of the base's structure (same module names); modules
            may be shared between tasks, but the parent of a replaced layer must be the task's own.
        base: the base task (its network is used as it is).
        select: ``(name, module) -> bool`` choosing the base layers that get deltas
            (default :func:`block_projections`; :func:`all_layers` for every linear / conv).
        delta_kwargs: passed to every :class:`WeightDelta` (``mode``, ``init_log_alpha``, ``threshold``).
    """

    def __init__(self, nets: Mapping[str, nn.Module], base: str, *, select: Select = block_projections,
                 **delta_kwargs: Any) -> None:
        super().__init__()
        if base not in nets:
            raise UnknownTaskError(f"base task {base!r} is not among the tasks {list(nets)}")
        self.tasks = list(nets)
        self.base = base
        self.nets = nn.ModuleDict(dict(nets))
        base_net = self.nets[base]
        chosen = [(n, m) for n, m in base_net.named_modules() if n and supports_delta(m) and select(n, m)]
        if not chosen:
            raise ModelError(f"no layer of the base network '{base}' was selected for deltas")
        self.layer_names = [n for n, _ in chosen]
        self._base_layers = {id(m.weight): m for _, m in chosen}
        for task in self.tasks:
            if task != base:
                self._attach(task, chosen, delta_kwargs)

    def _attach(self, task: str, chosen: list[tuple[str, nn.Module]], delta_kwargs: Mapping[str, Any]) -> None:
        net, base_net = self.nets[task], self.nets[self.base]
        for name, base_layer in chosen:
            parent_name, _, leaf = name.rpartition(".")
            try:
                parent = net.get_submodule(parent_name)
            except AttributeError:
                raise ModelError(f"task '{task}' has no module '{name}' (the base has)") from None
            if parent is base_net.get_submodule(parent_name):
                raise ModelError(f"module '{parent_name or '<root>'}' of task '{task}' is the base's own "
                                 f"object; give the task its own copy to put a delta on '{name}'")
            own = getattr(parent, leaf)
            if not isinstance(own, type(base_layer)) or own.weight.shape != base_layer.weight.shape:
                raise ModelError(f"layer '{name}' of task '{task}' does not match the base's "
                                 f"({type(own).__name__} {tuple(own.weight.shape)})")
            setattr(parent, leaf, delta_layer(base_layer, **delta_kwargs))

    @classmethod
    def from_multitask(cls, model: nn.Module, base: str, **kwargs: Any) -> DeltaNetworks:
        """From a multi-task model exposing ``tasks`` and ``task_model(task)`` (e.g. an exported
        ViT-MVT); blocks shared with the base are copied for the sub-tasks first."""
        tasks = cast("list[str]", list(model.tasks))  # type: ignore[arg-type]
        nets: dict[str, nn.Module] = {t: model.task_model(t) for t in tasks}  # type: ignore[operator]
        if base not in nets:
            raise UnknownTaskError(f"base task {base!r} is not among the tasks {list(nets)}")
        base_net = nets[base]
        for t, net in nets.items():
            if t != base and net is base_net:
                nets[t] = copy.deepcopy(net)
        return cls(nets, base, **kwargs)

    def delta_layers(self, task: str | None = None) -> list[DeltaLayer]:
        """The delta layers of one sub-task (or of all)."""
        tasks = [task] if task is not None else [t for t in self.tasks if t != self.base]
        return [m for t in tasks for m in self.nets[t].modules() if isinstance(m, DeltaLayer)]

    def weight_deltas(self) -> list[WeightDelta]:
        """Every :class:`WeightDelta` of every sub-task."""
        return [layer.delta for layer in self.delta_layers()]

    def _context(self) -> Any:
        return delta_context(self._base_layers)

    def forward_all(self, x: Any) -> dict[str, Any]:
        """Every task's output: the base runs once, each sub-task computes its deltas on top."""
        out = {}
        with self._context() as ctx:
            out[self.base] = self.nets[self.base](x)
            ctx.phase = "task"
            for t in self.tasks:
                if t != self.base:
                    out[t] = self.nets[t](x)
        return {t: out[t] for t in self.tasks}

    def forward(self, x: Any, task: str | None = None) -> Any:
        """One task's output (all tasks' when ``task`` is None). A sub-task runs densely with its
        merged weights, except when its delta activations are needed (inference thresholds,
        ``act_l1`` in training): then the base runs first (without gradients unless a delta has
        ``base_grad``). In training every delta layer runs as itself, even where the network
        calls ``F.linear`` on its weight, so its penalties reach ``auxiliary_losses()``."""
        if task is None:
            return self.forward_all(x)
        if task not in self.nets:
            raise UnknownTaskError(f"unknown task {task!r}; the tasks are {self.tasks}")
        needs_base = task != self.base and self._needs_base(task)
        if task == self.base or not (needs_base or self.training):
            return self.nets[task](x)
        with self._context() as ctx:
            if needs_base:
                grad = any(layer.delta.base_grad for layer in self.delta_layers(task))
                with torch.set_grad_enabled(torch.is_grad_enabled() and grad):
                    self.nets[self.base](x)
            ctx.phase = "task"
            return self.nets[task](x)

    def _needs_base(self, task: str) -> bool:
        layers = self.delta_layers(task)
        if self.training:
            return any(layer.delta.act_l1 > 0 for layer in layers)
        return any(float(layer.delta.threshold) > 0 or layer.sparse for layer in layers)
