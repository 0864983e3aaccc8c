"""Loss weighting and gradient-surgery methods for multi-task training, chosen by name.

Every method is a small ``nn.Module`` with one call::

    weighter = build_weighting("pcgrad", tasks)          # or dict(type="cagrad", c=0.4)
    info = weighter.backward(losses, shared_parameters=shared)
    optimizer.step()

``backward`` accumulates (``+=``) gradients into ``.grad`` of every parameter the losses
depend on, exactly like ``loss.backward()`` would, but combining the tasks its own way;
it returns the per-task weights it used (floats, for logging). Learnable weights
(``uncertainty``, ``gradnorm``) are ``nn.Parameter`` s of the weighter: put
``weighter.parameters()`` into the optimizer (``Trainer`` does). ``state_dict()`` /
``load_state_dict()`` carry everything needed to resume (weights, loss history, RNG).

========== ============================================================================
name       behaviour
========== ============================================================================
fixed      Σ λ_t L_t with constant λ (default 1)
uncertainty Kendall et al. 2018: Σ exp(−s_t) L_t + s_t, s_t = log σ_t² learnt
dwa        Liu et al. 2019: λ_t = T·softmax(r_t / temperature), r_t = L̄_t(k−1)/L̄_t(k−2)
           over windows of ``window`` iterations (or ``end_epoch()`` calls)
gradnorm   Chen et al. 2018: learnt λ_t make ‖∇_W λ_t L_t‖ follow the relative training
           rates (α); W = last shared weight tensor (``norm_on="last"``) or all shared
pcgrad     Yu et al. 2020: project each task gradient off the normal plane of every
           conflicting one (random order), sum
cagrad     Liu et al. 2021: conflict-averse direction d = g₀ + c‖g₀‖/‖g_w‖ g_w, with w
           maximising the worst task improvement; scaled by T/(1+c²) so that c = 0
           equals the plain sum of gradients
nash_mtl   Navon et al. 2022: d = Σ α_t g_t with (GGᵀα)_t = 1/α_t (bargaining solution):
           every task improves, invariant to each loss's scale
========== ============================================================================

Gradient-surgery methods (``pcgrad``, ``cagrad``, ``nash_mtl``) need ``shared_parameters``; parameters
outside it get the gradient of Σ L_t. They run T per-task backward passes plus one.
"""
from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from automtl.errors import ConfigError, TrainingError
from automtl.registry import WEIGHTINGS, build

__all__ = ["WEIGHTINGS", "Weighting", "FixedWeighting", "UncertaintyWeighting", "DWA", "GradNorm",
           "PCGrad", "CAGrad", "NashMTL", "build_weighting"]


Losses = Mapping[str, torch.Tensor]


def _sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """Σ of a non-empty run of tensors (like ``sum()``, typed as a tensor)."""
    return functools.reduce(operator.add, terms)


class Weighting(nn.Module):
    """Base: combines per-task losses into gradients (see the module docs)."""

    name = "base"

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("at least one task is required", key="tasks")
        self.tasks = list(tasks)

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        """Accumulate the combined gradients into ``.grad``; return the task weights used."""
        self._check(losses)
        weights = self.loss_weights(losses)
        total = _sum(weights[t] * losses[t] for t in self.tasks) + self.regulariser()
        total.backward()
        return {t: float(torch.as_tensor(weights[t]).detach()) for t in self.tasks}

    def loss_weights(self, losses: Losses) -> Mapping[str, torch.Tensor | float]:
        """Weights of a linear combination (linear methods override this)."""
        return {t: 1.0 for t in self.tasks}

    def regulariser(self) -> torch.Tensor | float:
        """Extra term added to the weighted sum (uncertainty's log σ²)."""
        return 0.0

    def end_epoch(self) -> None:
        """Called at an epoch boundary; only loss-history methods (DWA) use it."""

    def _check(self, losses: Losses) -> None:
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise ConfigError(f"losses lack task(s) {missing}; the weighting was built for {self.tasks}",
                              key="losses")
        for t in self.tasks:
            if not torch.isfinite(losses[t].detach()).all():
                raise TrainingError(f"loss of task '{t}' is {losses[t].item()} in {self.name} weighting")


@WEIGHTINGS.register_module(name=["fixed", "FixedWeighting"])
class FixedWeighting(Weighting):
    """Σ λ_t L_t with constant λ (``weights``; missing tasks get 1)."""

    name = "fixed"

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        self.fixed = {t: float((weights or {}).get(t, 1.0)) for t in self.tasks}

    def loss_weights(self, losses: Losses) -> dict[str, float]:
        return dict(self.fixed)


@WEIGHTINGS.register_module(name=["uncertainty", "UncertaintyWeighting"])
class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting: Σ exp(−s_t) L_t + s_t with learnt s_t = log σ_t².

    At the optimum exp(s_t) = L_t, so a noisier task (larger irreducible loss) gets a
    smaller weight. ``log_vars`` must be in the optimizer.
    """

    name = "uncertainty"

    def __init__(self, tasks: Sequence[str], init: float = 0.0) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init)))

    def loss_weights(self, losses: Losses) -> dict[str, torch.Tensor]:
        w = torch.exp(-self.log_vars)
        return {t: w[i] for i, t in enumerate(self.tasks)}

    def regulariser(self) -> torch.Tensor:
        return self.log_vars.sum()

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        self._check(losses)
        dev = next(iter(losses.values())).device
        if self.log_vars.device != dev:
            self.to(dev)
        return super().backward(losses, shared_parameters)


@WEIGHTINGS.register_module(name=["dwa", "DWA"])
class DWA(Weighting):
    """Dynamic weight average: tasks whose loss falls slowly get more weight.

    Losses are averaged over windows of ``window`` calls (``None``: only ``end_epoch()``
    closes a window); with two closed windows the weights are T·softmax(r/temperature),
    r_t = mean_{k-1}/mean_{k-2}; before that they are 1.
    """

    name = "dwa"

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0, window: int | None = 50) -> None:
        super().__init__(tasks)
        if window is not None and window < 1:
            raise ConfigError(f"window must be >= 1 or None, got {window}", key="window")
        self.temperature = float(temperature)
        self.window = window
        self._sum = [0.0] * len(self.tasks)
        self._count = 0
        self._history: list[list[float]] = []

    def current_weights(self) -> list[float]:
        """The weights the next ``backward`` uses."""
        if len(self._history) < 2:
            return [1.0] * len(self.tasks)
        prev, prev2 = self._history[-1], self._history[-2]
        r = np.array([a / max(b, 1e-12) for a, b in zip(prev, prev2)]) / self.temperature
        e = np.exp(r - r.max())
        return list(len(self.tasks) * e / e.sum())

    def loss_weights(self, losses: Losses) -> dict[str, float]:
        return dict(zip(self.tasks, self.current_weights()))

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        out = super().backward(losses, shared_parameters)
        for i, t in enumerate(self.tasks):
            self._sum[i] += float(losses[t].detach())
        self._count += 1
        if self.window is not None and self._count >= self.window:
            self.end_epoch()
        return out

    def end_epoch(self) -> None:
        if self._count == 0:
            return
        self._history = (self._history + [[s / self._count for s in self._sum]])[-2:]
        self._sum = [0.0] * len(self.tasks)
        self._count = 0

    def get_extra_state(self) -> dict[str, Any]:
        return {"sum": list(self._sum), "count": self._count, "history": [list(h) for h in self._history]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._sum = [float(x) for x in state["sum"]]
        self._count = int(state["count"])
        self._history = [[float(x) for x in h] for h in state["history"]]


def _task_grads(losses: Losses, tasks: Sequence[str], params: Sequence[nn.Parameter]) -> torch.Tensor:
    """``[T, P]`` flattened gradients of each task loss w.r.t. ``params`` (zeros if unused)."""
    rows = []
    for t in tasks:
        grads = torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params)]))
    return torch.stack(rows)


def _surgery_backward(losses: Losses, tasks: Sequence[str], params: Sequence[nn.Parameter],
                      combine) -> None:
    """Plain backward for every parameter, then shared ones get ``combine(G)`` instead of Σ g_t."""
    grads = _task_grads(losses, tasks, params)
    combined = combine(grads)
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    _sum(losses[t] for t in tasks).backward()
    offset = 0
    for p, old in zip(params, saved):
        n = p.numel()
        g = combined[offset:offset + n].view_as(p).to(p.dtype)
        offset += n
        p.grad = g.clone() if old is None else old + g


def _shared(shared_parameters: Sequence[nn.Parameter] | None, name: str) -> list[nn.Parameter]:
    if not shared_parameters:
        raise ConfigError(f"the '{name}' weighting needs shared_parameters", key="shared_parameters")
    return [p for p in shared_parameters if p.requires_grad]


@WEIGHTINGS.register_module(name=["gradnorm", "GradNorm"])
class GradNorm(Weighting):
    """GradNorm: learnt weights balancing the gradient norms by relative training rate.

    ``weights`` must be in the optimizer; they are renormalised to sum to T before each use.
    With ``alpha = 0`` the target is the mean norm, i.e. all weighted norms equal.
    """

    name = "gradnorm"
    initial_losses: torch.Tensor  # buffers (registered in __init__)
    started: torch.Tensor

    def __init__(self, tasks: Sequence[str], alpha: float = 1.5, norm_on: str = "last") -> None:
        super().__init__(tasks)
        if norm_on not in ("last", "all"):
            raise ConfigError("norm_on must be 'last' or 'all'", key="norm_on")
        self.alpha = float(alpha)
        self.norm_on = norm_on
        self.weights = nn.Parameter(torch.ones(len(self.tasks)))
        self.register_buffer("initial_losses", torch.zeros(len(self.tasks)))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))
        self.last_grad_norms: list[float] = []  # weighted norms of the last call (for logging)

    def _norm_params(self, shared: list[nn.Parameter]) -> list[nn.Parameter]:
        if self.norm_on == "all":
            return shared
        multi = [p for p in shared if p.dim() >= 2]
        return [(multi or shared)[-1]]

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        self._check(losses)
        shared = _shared(shared_parameters, self.name)
        dev = next(iter(losses.values())).device
        if self.weights.device != dev:
            self.to(dev)
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(len(self.tasks) / self.weights.sum())
        lvec = torch.stack([losses[t].detach().float() for t in self.tasks])
        if not bool(self.started):
            self.initial_losses.copy_(lvec.clamp_min(1e-12))
            self.started.fill_(True)
        grads = _task_grads(losses, self.tasks, self._norm_params(shared))
        norms = grads.norm(dim=1).detach().to(self.weights.dtype)
        gw = self.weights * norms  # ‖∇_W w_t L_t‖ = w_t ‖∇_W L_t‖
        self.last_grad_norms = [float(x) for x in gw.detach()]
        ratio = lvec / self.initial_losses
        rate = ratio / ratio.mean()
        target = (gw.mean() * rate ** self.alpha).detach()
        (grad_w,) = torch.autograd.grad((gw - target).abs().sum(), self.weights)
        self.weights.grad = grad_w if self.weights.grad is None else self.weights.grad + grad_w
        w = self.weights.detach()
        _sum(w[i] * losses[t] for i, t in enumerate(self.tasks)).backward()
        return {t: float(w[i]) for i, t in enumerate(self.tasks)}


@WEIGHTINGS.register_module(name=["pcgrad", "PCGrad"])
class PCGrad(Weighting):
    """Projecting conflicting gradients: g_i ← g_i − (g_i·g_j)/‖g_j‖² g_j when g_i·g_j < 0."""

    name = "pcgrad"

    def __init__(self, tasks: Sequence[str], seed: int = 0) -> None:
        super().__init__(tasks)
        self.generator = torch.Generator().manual_seed(int(seed))

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """The summed PCGrad direction of ``[T, P]`` task gradients."""
        out = grads.clone()
        n = grads.shape[0]
        for i in range(n):
            order = torch.randperm(n, generator=self.generator).tolist()
            for j in order:
                if j == i:
                    continue
                dot = out[i] @ grads[j]
                if dot < 0:
                    out[i] = out[i] - dot / grads[j].pow(2).sum().clamp_min(1e-20) * grads[j]
        return out.sum(dim=0)

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        self._check(losses)
        _surgery_backward(losses, self.tasks, _shared(shared_parameters, self.name), self.project)
        return {t: 1.0 for t in self.tasks}

    def get_extra_state(self) -> dict[str, Any]:
        return {"rng": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["rng"])


def _simplex_min(a: np.ndarray, c: float, iters: int = 300) -> np.ndarray:
    """argmin over the simplex of wᵀ A 1/T + c √(wᵀ A w) by exponentiated gradient."""
    t = len(a)
    b = a.mean(axis=1)
    w = np.full(t, 1.0 / t)

    def f(x: np.ndarray) -> float:
        return float(x @ b + c * math.sqrt(max(x @ a @ x, 0.0) + 1e-12))

    best, best_f = w.copy(), f(w)
    scale = max(np.abs(a).max(), 1e-12)
    for k in range(iters):
        q = math.sqrt(max(w @ a @ w, 0.0) + 1e-12)
        g = b + c * (a @ w) / q
        w = w * np.exp(-(2.0 / math.sqrt(k + 1)) * g / scale)
        w = w / w.sum()
        fw = f(w)
        if fw < best_f:
            best, best_f = w.copy(), fw
    return best


@WEIGHTINGS.register_module(name=["cagrad", "CAGrad"])
class CAGrad(Weighting):
    """Conflict-averse gradient descent (c ∈ [0, 1): radius around the mean gradient)."""

    name = "cagrad"

    def __init__(self, tasks: Sequence[str], c: float = 0.4) -> None:
        super().__init__(tasks)
        if c < 0:
            raise ConfigError(f"c must be >= 0, got {c}", key="c")
        self.c = float(c)
        self.last_w: list[float] = [1.0 / len(self.tasks)] * len(self.tasks)

    def direction(self, grads: torch.Tensor) -> torch.Tensor:
        """The CAGrad update of ``[T, P]`` task gradients, scaled to the sum of gradients."""
        g = grads.double()
        n = g.shape[0]
        g0 = g.mean(dim=0)
        gram = (g @ g.T).cpu().numpy()
        radius = self.c * math.sqrt(max(gram.mean(), 0.0))
        if radius == 0:
            d = g0
        else:
            w = _simplex_min(gram, radius)
            self.last_w = [float(x) for x in w]
            gw = torch.from_numpy(w).to(g) @ g
            d = g0 + radius / gw.norm().clamp_min(1e-12) * gw
        return (d * n / (1 + self.c ** 2)).to(grads.dtype)

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        self._check(losses)
        _surgery_backward(losses, self.tasks, _shared(shared_parameters, self.name), self.direction)
        return dict(zip(self.tasks, self.last_w))


def _nash_alpha(gram: np.ndarray, iters: int = 100) -> np.ndarray:
    """α > 0 with (G Gᵀ α)_i = 1/α_i: Newton's method on ½ αᵀMα − Σ log α_i (strictly convex)."""
    t = len(gram)
    diag = np.diag(gram)
    live = diag > 1e-20 * max(diag.max(), 1e-300)
    alpha = np.zeros(t)
    if not live.any():
        return alpha
    m = gram[np.ix_(live, live)]
    a = 1.0 / np.sqrt(np.diag(m))

    def f(x: np.ndarray) -> float:
        return float(0.5 * x @ m @ x - np.log(x).sum())

    for _ in range(iters):
        g = m @ a - 1.0 / a
        h = m + np.diag(1.0 / a ** 2)
        step = np.linalg.solve(h, g)
        lr, fa = 1.0, f(a)
        while lr > 1e-8:
            cand = a - lr * step
            if (cand > 0).all() and f(cand) <= fa:
                break
            lr *= 0.5
        else:
            break
        a = cand
        if np.abs(g).max() < 1e-10 * max(1.0, np.abs(1.0 / a).max()):
            break
    alpha[live] = a
    return alpha


@WEIGHTINGS.register_module(name=["nash_mtl", "NashMTL"])
class NashMTL(Weighting):
    """Nash-MTL (Navon et al. 2022): the bargaining direction d = Σ α_t g_t with (GGᵀα)_t = 1/α_t.

    Every task improves along d (g_t·d = 1/α_t > 0) and d does not change when one task's
    loss is rescaled. The α system is solved exactly by Newton's method on a convex
    function (the paper uses a sequence of convex programs); ``max_norm`` > 0 clips ‖d‖.
    """

    name = "nash_mtl"

    def __init__(self, tasks: Sequence[str], max_norm: float = 0.0) -> None:
        super().__init__(tasks)
        self.max_norm = float(max_norm)
        self.last_alpha: list[float] = [1.0] * len(self.tasks)

    def direction(self, grads: torch.Tensor) -> torch.Tensor:
        """The Nash-MTL update of ``[T, P]`` task gradients."""
        g = grads.double()
        alpha = _nash_alpha((g @ g.T).cpu().numpy())
        self.last_alpha = [float(x) for x in alpha]
        d = torch.from_numpy(alpha).to(g) @ g
        if self.max_norm > 0:
            n = d.norm()
            if n > self.max_norm:
                d = d * (self.max_norm / n)
        return d.to(grads.dtype)

    def backward(self, losses: Losses, shared_parameters: Sequence[nn.Parameter] | None = None,
                 ) -> dict[str, float]:
        self._check(losses)
        _surgery_backward(losses, self.tasks, _shared(shared_parameters, self.name), self.direction)
        return dict(zip(self.tasks, self.last_alpha))


def build_weighting(cfg: str | Mapping[str, Any] | Weighting, tasks: Sequence[str]) -> Weighting:
    """A weighting from a name (``"pcgrad"``), a config ``dict(type="cagrad", c=0.5)`` or an instance."""
    if isinstance(cfg, Weighting):
        return cfg
    spec = {"type": cfg} if isinstance(cfg, str) else dict(cfg)
    return build(WEIGHTINGS, spec, key="trainer.weighting", tasks=list(tasks))
