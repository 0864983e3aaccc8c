"""``Policy``: for every policy layer and task one of share / specialize / skip (plus logits),
or ``delta``: the layer of a base task plus a sparse delta (:mod:`automtl.delta`).

A policy is plain data: readable JSON keyed by layer name and task, validated against the
model it is used with, so a policy trained on one backbone cannot silently run on another.
A policy that uses ``delta`` names its base task (``"base"`` in the JSON); three-choice
policies read and write exactly as before.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from automtl.errors import PolicyError
from automtl.io import atomic_write_text

if TYPE_CHECKING:
    import torch

CHOICES: tuple[str, str, str] = ("share", "specialize", "skip")
#: the fourth choice: the base task's layer plus a sparse delta (needs a policy ``base``)
DELTA = "delta"
ALL_CHOICES: tuple[str, str, str, str] = (*CHOICES, DELTA)
FORMAT = "automtl-policy"
VERSION = 1


class PolicyTarget(Protocol):
    """What a policy is checked against (an ``MTLModel``)."""

    tasks: list[str]

    @property
    def policy_layers(self) -> list[str]: ...

    def skip_allowed(self, layer: str) -> bool: ...


def _delta_problems(policy: Policy, model: Any) -> list[str]:
    """Where ``policy`` uses ``delta`` that ``model`` cannot run (no deltas, base skips)."""
    if policy.base is None:
        return []
    allowed = getattr(model, "delta_allowed", None)
    base_of = getattr(model, "delta_base", None)
    if allowed is None or base_of is None:
        return [f"the model has no delta layers (policy base '{policy.base}')"]
    if base_of != policy.base:
        return [f"the policy's base task is '{policy.base}' but the model's deltas are on '{base_of}'"]
    bad = [f"{layer}/{t}" for layer in policy.layers for t, c in policy[layer].items()
           if c == DELTA and not allowed(layer, t)]
    if bad:
        return [f"'delta' is not possible at (layer/task) {_few(bad)}: the model has no delta there "
                "(add it with model.add_deltas)"]
    return []


def _few(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" … (+{len(names) - limit} more)" if len(names) > limit else "")


class Policy:
    """Per-(layer, task) choice among ``CHOICES``, optionally with the logits it came from.

    Example::

        policy = Policy.all(model, "share")
        policy = policy.replace({("layer4.1.conv2", "depth"): "specialize"})
        policy.save("policy.json"); Policy.load("policy.json", model=model)

    Args:
        choices: ``{layer: {task: choice}}``; layer and task order are kept.
        logits: optional ``{layer: {task: [share, specialize, skip]}}``.
        base: the base task of ``delta`` choices (required when any choice is ``delta``); the
            base itself shares, specializes or skips, and a task takes ``delta`` only where
            the base does not skip.
    """

    def __init__(
        self,
        choices: Mapping[str, Mapping[str, str]],
        *,
        logits: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
        base: str | None = None,
    ) -> None:
        self.layers: tuple[str, ...] = tuple(choices)
        if not self.layers:
            raise PolicyError("a policy needs at least one layer")
        self.tasks: tuple[str, ...] = tuple(choices[self.layers[0]])
        if base is not None and base not in self.tasks:
            raise PolicyError(f"base task {base!r} is not among the policy's tasks {list(self.tasks)}")
        self.base: str | None = base
        allowed = ALL_CHOICES if base is not None else CHOICES
        rows: list[tuple[str, ...]] = []
        for layer in self.layers:
            row = choices[layer]
            if set(row) != set(self.tasks):
                raise PolicyError(f"layer '{layer}' has tasks {sorted(row)}, expected {sorted(self.tasks)}")
            for task in self.tasks:
                if row[task] == DELTA and base is None:
                    raise PolicyError(f"layer '{layer}', task '{task}': 'delta' needs the policy's base task "
                                      "(Policy(..., base=TASK))")
                if row[task] not in allowed:
                    raise PolicyError(f"layer '{layer}', task '{task}': choice {row[task]!r} is not one of {allowed}")
            if base is not None and DELTA in row.values():
                if row[base] == DELTA:
                    raise PolicyError(f"layer '{layer}': the base task '{base}' cannot be a delta of itself")
                if row[base] == "skip":
                    raise PolicyError(f"layer '{layer}': 'delta' needs the base task '{base}' to compute the "
                                      "layer, but it skips it")
            rows.append(tuple(row[t] for t in self.tasks))
        self._rows: tuple[tuple[str, ...], ...] = tuple(rows)
        self._index = {name: i for i, name in enumerate(self.layers)}
        self.logits: dict[str, dict[str, list[float]]] | None = None
        if logits is not None:
            self.logits = {}
            for layer in self.layers:
                if layer not in logits:
                    raise PolicyError(f"logits miss layer '{layer}'")
                self.logits[layer] = {}
                for task in self.tasks:
                    vals = [float(v) for v in logits[layer].get(task, ())]
                    if len(vals) != len(CHOICES):
                        raise PolicyError(f"logits of layer '{layer}', task '{task}' need {len(CHOICES)} values")
                    if any(math.isnan(v) for v in vals):
                        raise PolicyError(f"logits of layer '{layer}', task '{task}' are NaN")
                    self.logits[layer][task] = vals

    # ---- access ----------------------------------------------------------------------------
    def choice(self, layer: str, task: str) -> str:
        """The choice of ``task`` at ``layer``."""
        try:
            return self._rows[self._index[layer]][self.tasks.index(task)]
        except KeyError:
            raise PolicyError(f"policy has no layer '{layer}'") from None
        except ValueError:
            raise PolicyError(f"policy has no task '{task}' (tasks: {list(self.tasks)})") from None

    def __getitem__(self, layer: str) -> dict[str, str]:
        if layer not in self._index:
            raise PolicyError(f"policy has no layer '{layer}'")
        return dict(zip(self.tasks, self._rows[self._index[layer]]))

    def task_choices(self, task: str) -> dict[str, str]:
        """``{layer: choice}`` of one task, in layer order."""
        if task not in self.tasks:
            raise PolicyError(f"policy has no task '{task}' (tasks: {list(self.tasks)})")
        j = self.tasks.index(task)
        return {layer: row[j] for layer, row in zip(self.layers, self._rows)}

    @property
    def choices(self) -> tuple[str, ...]:
        """The choices this policy may hold (``delta`` only with a base task)."""
        return ALL_CHOICES if self.base is not None else CHOICES

    def counts(self) -> dict[str, dict[str, int]]:
        """How many layers each task shares / specializes / skips (/ takes as a delta)."""
        out = {t: {c: 0 for c in self.choices} for t in self.tasks}
        for row in self._rows:
            for t, c in zip(self.tasks, row):
                out[t][c] += 1
        return out

    def key(self) -> tuple[Any, ...]:
        """A hashable identity of the discrete choices (for caches)."""
        return (self.layers, self.tasks, self._rows) if self.base is None else \
            (self.layers, self.tasks, self._rows, self.base)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Policy):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        summary = "; ".join(f"{t}: " + ",".join(f"{c}={n}" for c, n in cnt.items())
                            for t, cnt in self.counts().items())
        return f"Policy({len(self.layers)} layers, {summary})"

    def replace(self, updates: Mapping[tuple[str, str], str]) -> Policy:
        """A copy with some ``(layer, task) -> choice`` entries changed (logits dropped)."""
        choices = {layer: self[layer] for layer in self.layers}
        for (layer, task), choice in updates.items():
            if layer not in choices:
                raise PolicyError(f"policy has no layer '{layer}'")
            if task not in self.tasks:
                raise PolicyError(f"policy has no task '{task}' (tasks: {list(self.tasks)})")
            choices[layer][task] = choice
        return Policy(choices, base=self.base)

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def all(cls, model: PolicyTarget, choice: str = "share") -> Policy:
        """Every layer and task takes ``choice`` ("share" = hard sharing, "specialize" = separate nets)."""
        if choice not in ("share", "specialize"):
            raise PolicyError(f"Policy.all takes 'share' or 'specialize', not {choice!r}")
        return cls({layer: {t: choice for t in model.tasks} for layer in model.policy_layers})

    @classmethod
    def delta(cls, model: PolicyTarget, base: str, *, base_choice: str = "share",
              tasks: Sequence[str] | None = None) -> Policy:
        """The base task takes ``base_choice`` everywhere; every other task (or those in
        ``tasks``) takes ``delta`` wherever the model has a delta for it, else shares."""
        if base not in model.tasks:
            raise PolicyError(f"base task {base!r} is not among the model's tasks {list(model.tasks)}")
        if base_choice not in ("share", "specialize"):
            raise PolicyError(f"the base task shares or specializes, not {base_choice!r}")
        allowed = getattr(model, "delta_allowed", None)
        chosen = set(tasks) if tasks is not None else set(model.tasks) - {base}
        choices = {}
        for layer in model.policy_layers:
            choices[layer] = {t: base_choice if t == base else
                              DELTA if t in chosen and allowed is not None and allowed(layer, t) else "share"
                              for t in model.tasks}
        return cls(choices, base=base)

    @classmethod
    def random(cls, model: PolicyTarget, *, seed: int = 0, skip: bool = True) -> Policy:
        """A uniformly random valid policy (tests, baselines)."""
        import random

        rng = random.Random(seed)
        choices = {}
        for layer in model.policy_layers:
            allowed = [c for c in CHOICES if c != "skip" or (skip and model.skip_allowed(layer))]
            choices[layer] = {t: rng.choice(allowed) for t in model.tasks}
        return cls(choices)

    @classmethod
    def from_tensor(
        cls, index: torch.Tensor, layers: Sequence[str], tasks: Sequence[str], logits: torch.Tensor | None = None
    ) -> Policy:
        """Build from an ``(L, T)`` tensor of choice indices (and optional ``(L, T, 3)`` logits)."""
        idx = index.tolist()
        choices = {layer: {t: CHOICES[idx[i][j]] for j, t in enumerate(tasks)} for i, layer in enumerate(layers)}
        lg = None
        if logits is not None:
            vals = logits.detach().float().cpu().tolist()
            lg = {layer: {t: vals[i][j] for j, t in enumerate(tasks)} for i, layer in enumerate(layers)}
        return cls(choices, logits=lg)

    def index_tensor(self, model: PolicyTarget) -> torch.Tensor:
        """``(L, T)`` long tensor of choice indices in the model's layer and task order."""
        import torch

        self.validate(model)
        return torch.tensor([[ALL_CHOICES.index(self.choice(layer, t)) for t in model.tasks]
                             for layer in model.policy_layers], dtype=torch.long)

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, model: PolicyTarget) -> Policy:
        """Check that this policy fits ``model``; raise :class:`PolicyError` naming what differs."""
        problems = []
        mine, theirs = set(self.layers), list(model.policy_layers)
        missing = [n for n in theirs if n not in mine]
        extra = [n for n in self.layers if n not in set(theirs)]
        if missing:
            problems.append(f"layers missing from the policy: {_few(missing)}")
        if extra:
            problems.append(f"layers the model does not have: {_few(extra)}")
        t_missing = [t for t in model.tasks if t not in self.tasks]
        t_extra = [t for t in self.tasks if t not in model.tasks]
        if t_missing:
            problems.append(f"tasks missing from the policy: {_few(t_missing)}")
        if t_extra:
            problems.append(f"tasks the model does not have: {_few(t_extra)}")
        if not problems:
            bad = [f"{layer}/{t}" for layer in self.layers if not model.skip_allowed(layer)
                   for t, c in self[layer].items() if c == "skip"]
            if bad:
                problems.append(f"'skip' is not possible at (layer/task) {_few(bad)}: no projection "
                                "reproduces that layer's output shape")
            problems += _delta_problems(self, model)
        if problems:
            raise PolicyError("policy does not fit this model: " + "; ".join(problems))
        return self

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: ``{"policy": {layer: {task: choice}}, "logits": …}``."""
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "tasks": list(self.tasks),
            "choices": list(self.choices),
            "policy": {layer: self[layer] for layer in self.layers},
        }
        if self.base is not None:
            data["base"] = self.base
        if self.logits is not None:
            data["logits"] = self.logits
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Policy:
        """Inverse of :meth:`to_dict` (raises :class:`PolicyError` naming ``source``)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise PolicyError(f"{source}: not an automtl policy (expected \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise PolicyError(f"{source}: policy version {data.get('version')!r} is not supported (expected {VERSION})")
        table = data.get("policy")
        if not isinstance(table, Mapping) or not table:
            raise PolicyError(f"{source}: key 'policy' must map layer names to {{task: choice}}")
        tasks = data.get("tasks")
        ordered: dict[str, dict[str, str]] = {}
        for layer, row in table.items():
            if not isinstance(row, Mapping):
                raise PolicyError(f"{source}: layer '{layer}' must map task names to choices")
            order = tasks if isinstance(tasks, list) and set(tasks) == set(row) else list(row)
            ordered[layer] = {t: row[t] for t in order}
        base = data.get("base")
        if base is not None and not isinstance(base, str):
            raise PolicyError(f"{source}: key 'base' must be a task name, got {base!r}")
        try:
            return cls(ordered, logits=data.get("logits"), base=base)
        except PolicyError as exc:
            raise PolicyError(f"{source}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write readable JSON (atomically: no half-written file on failure)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, model: PolicyTarget | None = None) -> Policy:
        """Read a policy JSON; with ``model`` it is validated against it."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise PolicyError(f"{path}: no such policy file") from None
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        policy = cls.from_dict(data, source=str(path))
        if model is not None:
            try:
                policy.validate(model)
            except PolicyError as exc:
                raise PolicyError(f"{path}: {exc}") from None
        return policy
