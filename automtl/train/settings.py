"""Schemas of the training sections of a config: one pydantic model per section, whose
defaults are the defaults of the code that runs it (:class:`~automtl.train.Trainer`'s phases,
:func:`~automtl.train.choose_policy`, :func:`~automtl.train.train_supernet`).

Every field is typed strictly (``iters=2.5`` or ``iters="four"`` is refused, not rounded) and
bounded where a value makes no sense (``iters=-5``, ``lr=-1``); unknown keys are refused with
their dotted path by :func:`automtl.config.validate`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0)]
Rate = Annotated[float, Field(strict=True, gt=0, le=1)]
Lambdas = Optional[dict[str, Annotated[float, Field(strict=True, ge=0)]]]


class Section(BaseModel):
    """A config section: unknown keys refused, values validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def kwargs(self) -> dict[str, Any]:
        """The section as keyword arguments (only what the config set or defaults to)."""
        return self.model_dump()


class TrainerSettings(Section):
    """``trainer = dict(…)``: :class:`~automtl.train.Trainer` options."""

    weighting: Union[str, dict[str, Any]] = "fixed"
    policy_split: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.5
    print_iters: PosInt = 50
    val_iters: NonNegInt = 0
    checkpoint_iters: NonNegInt = 100
    baseline: Optional[Union[str, dict[str, Any]]] = None
    progress: bool = True
    tensorboard: bool = True


class _Phase(Section):
    iters: PosInt
    loss_lambda: Lambdas = None
    decay_lr_freq: Optional[PosInt] = None
    decay_lr_rate: Rate = 0.5
    weight_decay: NonNegFloat = 0.0


#: an optimiser spec, ``dict(type="Adam" | "AdamW" | "SGD", **torch kwargs)`` (see
#: :func:`automtl.train.optim.build_optimizer`); ``None``: AutoMTL's optimiser of the phase
OptimizerSpec = Optional[dict[str, Any]]


class PreTrainSettings(_Phase):
    """``pre_train = dict(iters=…, lr=…)``: every branch trained (stage ``pre``); AutoMTL's
    optimiser by default (Adam, betas (0.5, 0.999), weight decay 1e-4)."""

    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 1e-4
    optimizer: OptimizerSpec = None


class PolicyTrainSettings(_Phase):
    """``alter_train_with_reg = dict(…)``: alternating policy and network steps; AutoMTL's
    optimisers by default (weights: SGD, momentum 0.9, weight decay 1e-4; policy: Adam, weight
    decay 5e-4) and the regulariser's sharpness and term weights (``None``: the model's
    defaults, AutoMTL's sharpness 6 for ``MTLModel``)."""

    policy_network_iters: tuple[PosInt, PosInt] = (100, 400)
    policy_lr: PosFloat = 0.01
    network_lr: PosFloat = 1e-4
    weight_decay: NonNegFloat = 1e-4
    optimizer: OptimizerSpec = None
    policy_optimizer: OptimizerSpec = None
    policy_weight_decay: NonNegFloat = 5e-4
    reg_sharpness: Optional[PosFloat] = None
    reg_weights: Optional[tuple[NonNegFloat, NonNegFloat]] = None
    init_tau: PosFloat = 5.0
    tau_decay: Rate = 0.965
    tau_decay_every: Optional[PosInt] = None

    @field_validator("policy_network_iters", "reg_weights", mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(value)
        return value


class PostTrainSettings(_Phase):
    """``post_train = dict(iters=…, lr=…)``: the sampled policy trained as a fixed network;
    AutoMTL's optimiser by default (Adam, betas (0.5, 0.999), weight decay 1e-4, the rate
    halved every 4000 iterations)."""

    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 1e-4
    decay_lr_freq: Optional[PosInt] = 4000
    optimizer: OptimizerSpec = None
    weights: Optional[str] = None


class SampleSettings(Section):
    """``sample = dict(…)``: how the post-train policy is chosen (:func:`choose_policy`)."""

    n: PosInt = 20
    seed: Annotated[int, Field(strict=True)] = 0
    budget: Optional[PosFloat] = None
    max_params: Optional[PosInt] = None
    score: bool = True
    policy: Optional[str] = None
    all: Literal["share", "specialize"] = "share"
    temperature: PosFloat = 1.0
    max_batches: Optional[PosInt] = None
    include_argmax: bool = False
    baseline: Optional[Union[str, dict[str, Any]]] = None


class DeltaSettings(Section):
    """``delta = dict(base=…)``: delta sharing (:mod:`automtl.delta`): the base task, the target
    density of ΔW after step 2, the inference threshold of the delta activations (per layer in
    ``thresholds``), the policy (a JSON path; default: the base shares every layer, every other
    task takes ``delta`` wherever it can), the layers given deltas (default: every conv / linear of
    an ``MTLModel``; every block's attention and MLP projections of separate task networks)."""

    base: str
    density: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.1
    threshold: NonNegFloat = 0.15
    thresholds: Optional[dict[str, NonNegFloat]] = None
    mask: Literal["l0", "l1"] = "l0"
    init_log_alpha: Annotated[float, Field(strict=True)] = 2.0
    policy: Optional[str] = None
    layers: Optional[list[str]] = None


class DeltaTrainSettings(_Phase):
    """``delta_train = dict(iters=…)``: step 1, sparse weight deltas with L0 gates (or L1)."""

    lr: PosFloat = 1e-3
    l0_lambda: NonNegFloat = 0.5
    l0_target: Optional[Annotated[float, Field(strict=True, ge=0, le=1)]] = None
    l1_lambda: NonNegFloat = 0.01
    gate_lr: PosFloat = 0.01
    base_grad: bool = False
    weights: Optional[str] = None


class DeltaSupportSettings(_Phase):
    """``delta_support_train = dict(iters=…)``: step 2, the support fixed at ``delta.density``."""

    lr: PosFloat = 1e-3
    base_grad: bool = False


class DeltaActSettings(_Phase):
    """``delta_act_train = dict(iters=…)``: step 3, L1 on the delta activations."""

    lr: PosFloat = 1e-4
    act_l1: NonNegFloat = 0.05
    base_grad: bool = False


class SupernetTrainSettings(Section):
    """``supernet_train = dict(steps=…)``: one-shot supernet training for search."""

    steps: PosInt
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 0.05
    sampling: Literal["uniform", "sandwich"] = "sandwich"
    n_random: NonNegInt = 2
    checkpoint_every: NonNegInt = 100


def unique_tasks(tasks: Any, *, path: str | None = None) -> list[str]:
    """The ``tasks`` list: non-empty, strings, no duplicates (:class:`ConfigError` otherwise)."""
    from automtl.errors import ConfigError

    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)) or not tasks:
        raise ConfigError("must be a non-empty list of task names", key="tasks", path=path,
                          value=tasks)
    for i, t in enumerate(tasks):
        if not isinstance(t, str) or not t:
            raise ConfigError("a task name is a non-empty string", key=f"tasks.{i}", path=path,
                              value=t)
    dup = sorted({t for t in tasks if list(tasks).count(t) > 1})
    if dup:
        raise ConfigError(f"duplicated task(s) {dup}", key="tasks", path=path, value=list(tasks))
    return list(tasks)
