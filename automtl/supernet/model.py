"""``MTLModel``: a multi-task supernet over any backbone graph, one policy per layer and task."""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from automtl.errors import ConfigError, HeadMismatchError, ModelError, PolicyError, UnknownTaskError
from automtl.graph.ir import Graph
from automtl.graph.limits import check_model_size
from automtl.graph.module import GraphModule, module_key
from automtl.supernet._deltas import adopt_layout, bind_delta_steps
from automtl.supernet._plan import Program, build_program, inplace_relu_steps, run_program
from automtl.supernet._spec import BackboneSpec, UnitKey, analyse
from automtl.supernet._units import PolicyLayer
from automtl.supernet.policy import CHOICES, DELTA, Policy

if TYPE_CHECKING:
    from automtl.delta import WeightDelta
    from automtl.supernet.branched import BranchedModel

STAGES = ("pre", "mtl", "fixed", "common")
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)


def _load_backbone(backbone: Any, input_shape: Sequence[int] | None) -> tuple[Graph, nn.Module | None]:
    """A graph with shapes (and the module to copy weights from, for nn.Module backbones)."""
    if isinstance(backbone, (str, os.PathLike)):
        from automtl.graph import load_prototxt

        graph = load_prototxt(backbone)
        source = None
    elif isinstance(backbone, Graph):
        graph, source = backbone.copy(), None
    elif isinstance(backbone, nn.Module):
        from automtl.graph import from_module

        shape = tuple(input_shape or DEFAULT_INPUT_SHAPE)
        was_training = backbone.training
        graph = from_module(backbone, torch.zeros(shape))
        backbone.train(was_training)
        source = backbone
        input_shape = None
    else:
        raise ModelError(f"backbone must be a prototxt path, an nn.Module or a Graph, not {type(backbone).__name__}")
    if input_shape is not None:
        for name in graph.inputs:
            graph[name].attrs["shape"] = tuple(int(s) for s in input_shape)
        graph.infer_shapes()
    elif any(n.shape is None for n in graph if n.op in ("conv", "deconv", "linear", "input")):
        graph.infer_shapes()
    return graph, source


def _longest_path_coef(graph: Graph, names: Sequence[str]) -> torch.Tensor:
    """``(D − d)/D`` of each named node: ``d`` its longest-path depth from an input (inputs at
    0, each node one more than its deepest input), ``D`` the deepest node's (AutoMTL's
    ``node.depth`` and ``max_node_depth``)."""
    depth: dict[str, int] = {}
    for node in graph:  # graphs are kept in topological order
        depth[node.name] = 1 + max((depth[src] for src in node.inputs), default=-1)
    top = max(depth.values(), default=0) or 1
    return torch.tensor([(top - depth[n]) / top for n in names], dtype=torch.float32)


def _head_input(head: nn.Module) -> tuple[str, int] | None:
    """("channels"|"features", n) of the first convolution / linear layer of a head."""
    for m in head.modules():
        if isinstance(m, nn.modules.lazy.LazyModuleMixin):
            return None
        if isinstance(m, nn.modules.conv._ConvNd):
            return "channels", m.in_channels
        if isinstance(m, nn.Linear):
            return "features", m.in_features
    return None


class MTLModel(nn.Module):
    """A multi-task supernet: every weighted backbone layer × task chooses share/specialize/skip.

    Example::

        model = MTLModel(torchvision.models.resnet18(), {"seg": SegHead(512), "depth": DepthHead(512)})
        out = model(x, task="seg", stage="mtl", tau=5.0)      # Gumbel-softmax mixture
        policy = model.sample_policy(seed=0)
        outs = model.forward_all(x, policy)                   # {task: output}
        branched = model.compile(policy)                      # plain nn.Module, shared trunk runs once

    Args:
        backbone: a prototxt path, an ``nn.Module`` (imported with torch.fx, weights copied) or a
            :class:`~automtl.graph.Graph`.
        heads: ``{task: nn.Module}``; each head reads the backbone output.
        bn_per_task: give every task its own BatchNorm (AutoMTL's default).
        input_shape: example input shape used to trace / infer shapes (default ``(1, 3, 224, 224)``
            for ``nn.Module`` backbones; for graphs it overrides the declared input shape).
    """

    _skip_ok: torch.Tensor  # buffer: whether skip is allowed, per policy layer
    _depth_coef: torch.Tensor  # buffer: the regulariser's (D - depth) / D, per policy layer

    def __init__(self, backbone: Any, heads: Mapping[str, nn.Module], *, bn_per_task: bool = True,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        graph, source = _load_backbone(backbone, input_shape)
        tasks = list(heads)
        if not tasks:
            raise ModelError("MTLModel needs at least one task head")
        for t in tasks:
            if not isinstance(t, str) or not t or "." in t:
                raise ModelError(f"task name {t!r} must be a non-empty string without '.'")
        self.graph = graph
        self.tasks: list[str] = tasks
        self.bn_per_task = bn_per_task
        self.spec: BackboneSpec = analyse(graph, bn_per_task=bn_per_task)
        check_model_size(graph, param_copies=1 + len(tasks))  # shared weights + one copy per task
        gm = GraphModule(graph)
        if source is not None:
            gm.load_from(source)
        self.units = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        self.task_norms = nn.ModuleDict()
        for item in self.spec.items:
            key = module_key(item.name)
            if item.kind == "unit":
                u = item.unit
                assert u is not None
                norm = gm.layer(u.norm) if u.norm else None
                self.units[key] = PolicyLayer(u, tasks, gm.layer(u.name), norm, graph[u.norm] if u.norm else None)
            elif item.kind == "tnorm":
                self.task_norms[key] = nn.ModuleDict({t: copy.deepcopy(gm.layer(item.name)) for t in tasks})
            elif item.kind == "op":
                self.ops[key] = gm.layer(item.name)
        self.heads = nn.ModuleDict(dict(heads))
        self._check_heads()
        n_layers = len(self.spec.units)
        self.logits = nn.Parameter(torch.zeros(n_layers, len(tasks), len(CHOICES)))
        skip_ok = torch.tensor([u.skip_ok for u in self.spec.units])
        self.register_buffer("_skip_ok", skip_ok, persistent=False)
        self.register_buffer("_depth_coef", _longest_path_coef(graph, [u.name for u in self.spec.units]),
                             persistent=False)
        self._skip_list = [u.skip_ok for u in self.spec.units]
        self._policy: Policy | None = None
        self._common_policy: Policy | None = None
        self._programs: dict[Any, tuple[Program, list[nn.Module]]] = {}
        self._mixed: dict[str, list[tuple[Any, ...]]] = {}
        self.delta_base: str | None = None  # the base task of the ``delta`` choice (add_deltas)

    # ---- structure --------------------------------------------------------------------------
    @property
    def policy_layers(self) -> list[str]:
        """Names of the layers that carry a policy, in execution order."""
        return self.spec.layer_names

    def skip_allowed(self, layer: str) -> bool:
        """Whether ``skip`` is possible at ``layer`` (identity or a 1×1 projection fits)."""
        for u in self.spec.units:
            if u.name == layer:
                return u.skip_ok
        raise PolicyError(f"model has no policy layer '{layer}'")

    def unit(self, layer: str) -> PolicyLayer:
        """The :class:`PolicyLayer` of a policy layer."""
        return self._unit_at(module_key(layer))

    def _unit_at(self, key: str) -> PolicyLayer:
        return cast(PolicyLayer, self.units[key])  # ``units`` holds PolicyLayers only

    def _norms_at(self, key: str) -> nn.ModuleDict:
        return cast(nn.ModuleDict, self.task_norms[key])  # ``task_norms`` holds {task: norm} dicts only

    def _check_heads(self) -> None:
        shape = self.graph[self.spec.outputs[0]].shape if len(self.spec.outputs) == 1 else None
        if shape is None or len(shape) < 2:
            return
        channels = shape[1]
        for task, head in self.heads.items():
            found = _head_input(head)
            if found is None:
                continue
            kind, n = found
            ok = n == channels or (kind == "features" and n in (shape[-1], math.prod(shape[1:])))
            if not ok:
                raise HeadMismatchError(
                    f"head of task '{task}' expects {n} input {kind} but the backbone output "
                    f"'{self.spec.outputs[0]}' has {channels} channels (shape {tuple(shape)})")

    def _check_task(self, task: Any) -> str:
        if task not in self.tasks:
            raise UnknownTaskError(f"unknown task {task!r}; the model's tasks are {self.tasks}")
        return task

    def module_of(self, ref: UnitKey) -> nn.Module:
        """The module a program reference points at."""
        kind, name, owner = ref
        key = module_key(name)
        if kind == "op":
            return self.ops[key]
        if kind == "tnorm":
            return self._norms_at(key)[owner]
        return self._unit_at(key).part(kind, owner)

    # ---- deltas (the fourth choice) -----------------------------------------------------------
    def add_deltas(self, base: str, *, tasks: Sequence[str] | None = None, layers: Sequence[str] | None = None,
                   **delta_kwargs: Any) -> None:
        """Let ``tasks`` (default: all but ``base``) take ``delta`` at ``layers`` (default: every
        linear / zero-padded conv layer): each gets a zero :class:`~automtl.delta.WeightDelta`
        on the base task's weight and its own norm. ``delta_kwargs`` go to every delta
        (``mode``, ``init_log_alpha``, ``threshold``)."""
        base = self._check_task(base)
        if self.delta_base is not None and self.delta_base != base:
            raise ModelError(f"the model's deltas are on base task '{self.delta_base}', not '{base}'")
        subs = [self._check_task(t) for t in tasks] if tasks is not None else [t for t in self.tasks if t != base]
        if base in subs:
            raise ModelError(f"the base task '{base}' cannot take a delta on itself")
        names = list(layers) if layers is not None else [u.name for u in self.spec.units
                                                         if self.unit(u.name).delta_capable()]
        for name in names:
            unit = self.unit(name) if name in self.policy_layers else None
            if unit is None:
                raise PolicyError(f"model has no policy layer '{name}'")
            if not unit.delta_capable():
                raise ModelError(f"layer '{name}' ({type(unit.common).__name__}) cannot carry a delta; "
                                 "deltas go on nn.Linear and zero-padded nn.Conv2d layers")
            unit.add_deltas(subs, **delta_kwargs)
        self.delta_base = base
        self._programs.clear()

    def delta_allowed(self, layer: str, task: str) -> bool:
        """Whether ``task`` can take ``delta`` at ``layer`` (see :meth:`add_deltas`)."""
        return layer in self.policy_layers and self.unit(layer).has_delta(task)

    def weight_delta(self, layer: str, task: str) -> WeightDelta:
        """The weight delta of ``task`` at ``layer`` (:class:`PolicyError` where it has none)."""
        if not self.delta_allowed(layer, task):
            raise PolicyError(f"task '{task}' has no delta at layer '{layer}' (add it with model.add_deltas)")
        return cast("WeightDelta", self.unit(layer).part("delta", task))

    def weight_deltas(self, policy: Policy | None = None) -> list[WeightDelta]:
        """The weight deltas ``policy`` uses (every one of the model without a policy)."""
        if policy is None:
            return [d for key in self.units for d in (self._unit_at(key).delta or {}).values()]  # type: ignore[misc]
        policy.validate(self)
        return [cast("WeightDelta", self._unit_at(module_key(layer)).part("delta", t))
                for layer in policy.layers for t, c in policy[layer].items() if c == DELTA]

    def adopt_state_layout(self, state: Mapping[str, Any]) -> None:
        """Give every weight delta the layout ``state`` saved (sparse support or dense), so a
        state dict written after any training step loads; call before checking or loading."""
        adopt_layout(self.units, state)
        self._programs.clear()

    # ---- parameters ---------------------------------------------------------------------------
    def policy_parameters(self) -> Iterator[nn.Parameter]:
        """The policy logits (train them with their own optimiser)."""
        yield self.logits

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except the policy logits (backbone branches and heads)."""
        for p in self.parameters():
            if p is not self.logits:
                yield p

    # ---- policies -------------------------------------------------------------------------------
    def _checked_logits(self) -> torch.Tensor:
        logits = self.logits
        bad = ~torch.isfinite(logits)
        if bool(bad.any()):
            where = sorted({(self.policy_layers[i], self.tasks[j]) for i, j, _ in bad.nonzero().tolist()})
            shown = ", ".join(f"{layer}/{t}" for layer, t in where[:6]) + (" …" if len(where) > 6 else "")
            raise PolicyError(f"policy logits are NaN or infinite at (layer/task) {shown}")
        return logits

    def _masked(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with ``skip`` at -inf where it is not allowed."""
        if all(self._skip_list):
            return logits
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[:, :, 2] = ~self._skip_ok.view(-1, 1)
        return logits.masked_fill(mask, float("-inf"))

    def policy_logits(self) -> Policy:
        """The current logits as a :class:`Policy` (choices = argmax, ``.logits`` attached)."""
        return self.argmax_policy()

    def argmax_policy(self) -> Policy:
        """The most likely choice of every layer and task."""
        logits = self._checked_logits().detach()
        index = self._masked(logits).argmax(-1)
        return Policy.from_tensor(index, self.policy_layers, self.tasks, logits)

    def sample_policy(self, *, seed: int | None = None, temperature: float = 1.0) -> Policy:
        """Draw every choice from ``softmax(logits / temperature)`` (AutoMTL's sampler)."""
        logits = self._checked_logits().detach().float().cpu()
        probs = torch.softmax(self._masked(logits) / temperature, dim=-1)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        index = torch.multinomial(probs.view(-1, len(CHOICES)), 1, generator=gen).view(probs.shape[:2])
        return Policy.from_tensor(index, self.policy_layers, self.tasks, logits)

    def set_policy(self, policy: Policy | None) -> None:
        """Policy used by ``stage="fixed"`` and ``forward_all`` when none is passed."""
        self._policy = policy.validate(self) if policy is not None else None

    @property
    def policy(self) -> Policy | None:
        return self._policy

    def policy_regularizer(self, *, sharpness: float = 6.0, weights: tuple[float, float] = (1.0, 1.0),
                           depth_weighted: bool = True, depth: str = "graph",
                           tasks: Sequence[str] | None = None) -> torch.Tensor:
        """AutoMTL's regulariser ("design 3"), pushing low layers towards *share* (DESIGN §3).

        ``Σ_t Σ_l c_l · [w₁·softplus(s(g₁−g₀)) + w₂·softplus(s(g₂−g₀))]`` with logits
        ``g = (share, specialize, skip)`` and ``s = sharpness`` (AutoMTL's policy steps use 6);
        the skip term is left out where skip is not allowed. ``c_l = (D − d_l)/D`` with ``d_l``
        the layer's longest-path depth from the input in the backbone graph and ``D`` the
        graph's (AutoMTL's ``max_node_depth``); ``depth="index"``: ``d_l`` the layer's index
        among the policy layers and ``D`` their number; ``c_l = 1`` without depth weighting.
        """
        logits = self._checked_logits()
        if tasks is not None:
            logits = logits[:, [self.tasks.index(self._check_task(t)) for t in tasks]]
        n = logits.shape[0]
        if depth not in ("graph", "index"):
            raise ConfigError("must be 'graph' or 'index'", key="depth", value=depth)
        if depth_weighted and depth == "graph":
            coef = self._depth_coef.to(device=logits.device, dtype=logits.dtype)
        elif depth_weighted:
            coef = (n - torch.arange(n, device=logits.device, dtype=logits.dtype)) / n
        else:
            coef = torch.ones(n, device=logits.device, dtype=logits.dtype)
        g0 = logits[..., 0]
        spec = F.softplus(sharpness * (logits[..., 1] - g0)) * weights[0]
        skip = F.softplus(sharpness * (logits[..., 2] - g0)) * weights[1] * self._skip_ok.view(-1, 1).to(logits.dtype)
        return ((spec + skip) * coef.view(-1, 1)).sum()

    # ---- fixed-policy programs ----------------------------------------------------------------
    def program(self, policy: Policy, tasks: Sequence[str] | None = None) -> Program:
        """The deduplicated computation of ``policy`` for ``tasks`` (see :mod:`._plan`)."""
        return self._program(policy, tuple(tasks) if tasks is not None else tuple(self.tasks))[0]

    def _program(self, policy: Policy, tasks: tuple[str, ...]) -> tuple[Program, list[nn.Module]]:
        key = (policy.key(), tasks)
        hit = self._programs.get(key)
        if hit is not None:
            return hit
        policy.validate(self)
        for t in tasks:
            self._check_task(t)
        units = self.spec.units
        rows = [policy.task_choices(t) for t in self.tasks]
        by_task = {t: rows[self.tasks.index(t)] for t in self.tasks}
        prog = build_program(
            self.spec, tasks,
            choice=lambda i, t: by_task[t][units[i].name],
            share_owner=lambda i, t: t if units[i].norm_per_task else "",
            proj_owner=lambda i, t: t if units[i].proj_norm_per_task else "",
            base=policy.base,
        )
        modules = bind_delta_steps(prog, [self.module_of(s.ref) for s in prog.steps])
        inplace = nn.ReLU(inplace=True)
        modules = [inplace if ok else m for m, ok in zip(modules, inplace_relu_steps(prog, modules))]
        if len(self._programs) > 32:
            self._programs.clear()
        self._programs[key] = (prog, modules)
        return prog, modules

    def _resolve_policy(self, policy: Policy | None) -> Policy:
        policy = policy if policy is not None else self._policy
        if policy is None:
            raise PolicyError("no policy: pass policy=… or call model.set_policy(policy) first")
        if not isinstance(policy, Policy):
            raise PolicyError(f"expected a Policy, got {type(policy).__name__}")
        return policy

    def features_all(self, x: torch.Tensor, policy: Policy | None = None,
                     tasks: Sequence[str] | None = None) -> dict[str, Any]:
        """Backbone features of every task under a fixed policy (shared steps run once)."""
        prog, modules = self._program(self._resolve_policy(policy), tuple(tasks) if tasks else tuple(self.tasks))
        return run_program(prog, modules, x)

    def forward_all(self, x: torch.Tensor, policy: Policy | None = None, *,
                    tasks: Sequence[str] | None = None) -> dict[str, Any]:
        """``{task: head output}`` under a fixed policy; each shared computation runs once."""
        feats = self.features_all(x, policy, tasks)
        return {t: self._head(t, f) for t, f in feats.items()}

    def _head(self, task: str, feats: Any) -> Any:
        head = self.heads[task]
        return head(*feats) if isinstance(feats, tuple) else head(feats)

    # ---- mixed stages (pre / mtl) -------------------------------------------------------------
    def _mixed_plan(self, task: str) -> list[tuple[Any, ...]]:
        plan = self._mixed.get(task)
        if plan is not None:
            return plan
        slots: dict[str, int] = {}
        plan = []
        for item in self.spec.items:
            ins = tuple(slots[i] for i in item.inputs)
            unit = item.unit if item.kind == "unit" else None
            slots[unit.out if unit is not None else item.name] = len(slots)
            out = len(slots) - 1
            key = module_key(item.name)
            if item.kind == "input":
                plan.append(("input", None, ins, out, -1))
            elif unit is not None:
                plan.append(("unit", self._unit_at(key), ins, out, unit.index))
            elif item.kind == "tnorm":
                plan.append(("op", self._norms_at(key)[task], ins, out, -1))
            else:
                plan.append(("op", self.ops[key], ins, out, -1))
        out_slots = tuple(slots[o] for o in self.spec.outputs)
        plan.append(("output", None, out_slots, -1, -1))
        self._mixed[task] = plan
        return plan

    def _forward_mixed(self, x: torch.Tensor, task: str, weights: torch.Tensor, hard_index: list[int] | None,
                       active_all: list[tuple[bool, bool, bool]]) -> Any:
        plan = self._mixed_plan(task)
        env: list[Any] = [None] * len(plan)
        for kind, module, ins, out, idx in plan:
            if kind == "input":
                env[out] = x
            elif kind == "unit":
                if hard_index is not None:
                    env[out] = module.branch(env[ins[0]], hard_index[idx], task)
                else:
                    env[out] = module.mix(env[ins[0]], weights[idx], task, active_all[idx])
            elif kind == "op":
                env[out] = module(*[env[i] for i in ins])
            else:
                return env[ins[0]] if len(ins) == 1 else tuple(env[i] for i in ins)
        raise AssertionError("plan without output")

    def _stage_weights(self, task: str, stage: str, tau: float, hard: bool
                       ) -> tuple[torch.Tensor, list[int] | None, list[tuple[bool, bool, bool]]]:
        j = self.tasks.index(task)
        skip_ok = self._skip_list
        active = [(True, True, bool(s)) for s in skip_ok]
        if stage == "pre":
            rows = [[1 / 3, 1 / 3, 1 / 3] if s else [0.5, 0.5, 0.0] for s in skip_ok]
            w = torch.tensor(rows, device=self.logits.device, dtype=self.logits.dtype)
            return w, None, active
        logits = self._masked(self._checked_logits()[:, j])
        w = F.gumbel_softmax(logits, tau=tau, hard=hard, dim=-1)
        if hard and not (torch.is_grad_enabled() and self.logits.requires_grad):
            return w, w.argmax(-1).tolist(), active  # no gradient needed: run the chosen branch only
        return w, None, active

    # ---- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, task: str | None = None, stage: str = "mtl", tau: float = 5.0,
                hard: bool = False, policy: Policy | None = None) -> Any:
        """Output of ``task``'s head under ``stage`` (``"common"``: backbone features, no head).

        * ``"pre"``: every layer averages its branches (AutoMTL's pre-train);
        * ``"mtl"``: Gumbel-softmax mixture of the branches with temperature ``tau``
          (``hard=True``: straight-through one-hot);
        * ``"fixed"``: the discrete ``policy`` (or the one given to :meth:`set_policy`);
        * ``"common"``: the shared weights only; ``task`` picks whose per-task norms to use
          (default: the first task).
        """
        if stage not in STAGES:
            raise ModelError(f"unknown stage {stage!r}; use one of {STAGES}")
        if stage == "common":
            t = self._check_task(task) if task is not None else self.tasks[0]
            if self._common_policy is None:
                self._common_policy = Policy.all(self, "share")
            return self.features_all(x, self._common_policy, [t])[t]
        if task is None:
            raise UnknownTaskError(f"stage '{stage}' needs task=…; the model's tasks are {self.tasks}")
        task = self._check_task(task)
        if stage == "fixed":
            feats = self.features_all(x, self._resolve_policy(policy), [task])[task]
            return self._head(task, feats)
        weights, hard_index, active = self._stage_weights(task, stage, tau, hard)
        return self._head(task, self._forward_mixed(x, task, weights, hard_index, active))

    # ---- deployment ----------------------------------------------------------------------------
    def count_params(self, policy: Policy) -> dict[str, int]:
        """Parameters a deployment of ``policy`` needs: per task, and ``"total"`` (shared counted once).

        Analytic: it sums the sizes of the modules the policy uses, without building anything,
        and equals ``sum(p.numel() for p in model.compile(policy).parameters())``. A ``delta``
        counts only its non-zero ΔW entries (stored sparse) and its Δbias; a task taking deltas
        also counts the base layers it reads.
        """
        policy.validate(self)
        sizes: dict[UnitKey, int] = {}

        def size(ref: UnitKey) -> int:
            if ref not in sizes:
                module = self.module_of(ref)
                sizes[ref] = (module.nonzero() if ref[0] == "delta"  # type: ignore[operator]
                              else sum(p.numel() for p in module.parameters()))
            return sizes[ref]

        used: dict[str, set[UnitKey]] = {}
        for t in self.tasks:
            prog = build_program(
                self.spec, [t], choice=lambda i, task: policy.choice(self.spec.units[i].name, task),
                share_owner=lambda i, task: task if self.spec.units[i].norm_per_task else "",
                proj_owner=lambda i, task: task if self.spec.units[i].proj_norm_per_task else "",
                base=policy.base,
            )
            used[t] = set(prog.refs())
        heads = {t: sum(p.numel() for p in self.heads[t].parameters()) for t in self.tasks}
        out = {t: sum(size(r) for r in used[t]) + heads[t] for t in self.tasks}
        out["total"] = sum(size(r) for r in set().union(*used.values())) + sum(heads.values())
        return out

    def compile(self, policy: Policy | None = None, *, tasks: Sequence[str] | None = None,  # type: ignore[override]
                sparse_deltas: bool = False) -> BranchedModel:
        """The branched network of ``policy``: a plain module, shared layers run once per group.

        ``delta`` layers keep only their non-zero ΔW entries (the base path runs once); with
        ``sparse_deltas`` they compute ``y_base + W·Δx + ΔW·x_base`` with the sparse kernels,
        else one dense layer on ``x_base + Δx`` (faster on CPU at the densities measured in
        BENCHMARKS.md, section ``delta``).

        Note: this replaces ``nn.Module.compile`` (``torch.compile``) on ``MTLModel``; call
        ``torch.compile(model)`` for that.
        """
        from automtl.supernet.branched import BranchedModel

        policy = self._resolve_policy(policy)
        prog, modules = self._program(policy, tuple(tasks) if tasks else tuple(self.tasks))
        return BranchedModel.build(prog, modules, {t: self.heads[t] for t in prog.outputs}, policy,
                                   sparse_deltas=sparse_deltas)

    def __deepcopy__(self, memo: dict[int, Any]) -> MTLModel:
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for k, v in self.__dict__.items():
            if k in ("_programs", "_mixed"):
                clone.__dict__[k] = {}
            else:
                clone.__dict__[k] = copy.deepcopy(v, memo)
        return clone

    def extra_repr(self) -> str:
        return (f"tasks={self.tasks}, policy_layers={len(self.spec.units)}, bn_per_task={self.bn_per_task}, "
                f"backbone='{self.graph.name}'")
