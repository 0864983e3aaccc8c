"""The identity of a run: the resolved settings it was started with, checked when it resumes.

A :class:`Fingerprint` is the run-defining part of a resolved config flattened to dotted keys
(``{"data.size": "32", "model.backbone.widths": "[8, 16]", …}``, values as JSON). Every
checkpoint written through :mod:`automtl.train.resume` carries the fingerprint of its run, and
a resume whose fingerprint differs is refused with a :class:`CheckpointError` naming each
differing key, e.g. ``checkpoint was written with data.size=32, this run has data.size=64``.

Keys that may change on resume (``may_change``: exact dotted keys, key prefixes such as
``trainer`` or globs such as ``trainer.*_iters``) are left out of the comparison. ``stages``
orders the config sections of consecutive phases: the fingerprint of one phase
(:meth:`Fingerprint.upto`) leaves out the sections of the phases after it, so a later phase's
settings may change while an earlier one resumes.

Example::

    fp = Fingerprint.of({"seed": 0, "data": {"size": 32}}, may_change=("trainer.print_iters",))
    fp.check(saved_fingerprint, "checkpoints/pre_train_latest.pt")
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from automtl.errors import CheckpointError

__all__ = ["AUTOMTL_MAY_CHANGE", "SUPERNET_MAY_CHANGE", "Fingerprint", "flatten"]

#: keys of an AutoMTL config that never change what a run computes (cadence, display, evaluation)
AUTOMTL_MAY_CHANGE = ("work_dir", "trainer.print_iters", "trainer.val_iters", "trainer.checkpoint_iters",
                      "trainer.progress", "trainer.tensorboard", "trainer.baseline", "data.check")
#: keys of a supernet config that never change what a run computes
SUPERNET_MAY_CHANGE = ("work_dir", "supernet_train.checkpoint_every", "data.check")

UNSET = "<unset>"


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``: dicts are walked, every other value is a JSON leaf."""
    if isinstance(value, Mapping) and (value or not prefix):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def _matches(key: str, patterns: Iterable[str]) -> bool:
    """Whether ``key`` is one of ``patterns``, lies under one (a prefix) or fits one (a glob)."""
    return any(key == p or key.startswith(p + ".") or fnmatchcase(key, p) for p in patterns)


@dataclass(frozen=True)
class Fingerprint:
    """The run-defining settings of a run as ``{dotted key: JSON value}`` (see the module docs)."""

    values: Mapping[str, str]
    may_change: tuple[str, ...] = ()
    stages: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, sections: Mapping[str, Any], *, may_change: Iterable[str] = (),
           stages: Iterable[str] = ()) -> Fingerprint:
        """The fingerprint of resolved config ``sections`` (pydantic sections as their dumps)."""
        plain = {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in sections.items()}
        return cls(flatten(plain), tuple(may_change), tuple(stages))

    def upto(self, stage: str) -> Fingerprint:
        """The fingerprint of phase ``stage``: the sections of later stages left out."""
        if stage not in self.stages:
            return self
        later = self.stages[self.stages.index(stage) + 1:]
        kept = {k: v for k, v in self.values.items() if not _matches(k, later)}
        return Fingerprint(kept, self.may_change, self.stages)

    def compared(self) -> dict[str, str]:
        """The values a resume must match (``may_change`` keys left out)."""
        return {k: v for k, v in self.values.items() if not _matches(k, self.may_change)}

    def differences(self, saved: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """``(key, saved value, this value)`` of every compared key that differs, sorted by key."""
        ours = self.compared()
        theirs = {str(k): str(v) for k, v in saved.items() if not _matches(str(k), self.may_change)}
        return [(k, theirs.get(k, UNSET), ours.get(k, UNSET)) for k in sorted(set(ours) | set(theirs))
                if theirs.get(k) != ours.get(k)]

    def check(self, saved: Any, where: Any) -> None:
        """:class:`CheckpointError` naming every differing key when ``saved`` (a checkpoint's
        fingerprint) does not match this run."""
        if not isinstance(saved, Mapping):
            raise CheckpointError(f"{where}: its 'fingerprint' is a {type(saved).__name__}, expected a dict")
        diff = self.differences(saved)
        if not diff:
            return
        shown = diff[:8]
        more = f" (+{len(diff) - 8} more)" if len(diff) > 8 else ""
        raise CheckpointError(
            f"{where}: checkpoint was written with {', '.join(f'{k}={a}' for k, a, _ in shown)}{more}, "
            f"this run has {', '.join(f'{k}={b}' for k, _, b in shown)}; resume with the same settings, "
            f"pass --allow-changed {' '.join(k for k, _, _ in shown)} if the change is intended, "
            "or remove the checkpoint to start over")
