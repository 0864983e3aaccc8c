"""Single-task baselines vs. hard sharing vs. AutoMTL on the same data, in one run (the demo).

Every method uses the same backbone, heads, optimiser and batch; the final numbers come from
a held-out *test* split, while AutoMTL's policy choice only sees the *val* split.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from automtl.io import atomic_write, atomic_write_text


@dataclass
class CompareSettings:
    """Sizes and iteration counts of a comparison run (defaults: the 10-minute CPU demo)."""

    tasks: tuple[str, ...] = ("segment_semantic", "depth_zbuffer", "normal")
    size: int = 32
    n_train: int = 512
    n_val: int = 96
    n_test: int = 160
    batch_size: int = 16
    widths: tuple[int, ...] = (16, 32, 64)
    head_channels: int = 32
    lr: float = 1e-3
    baseline_iters: int = 500       # single-task and hard-sharing training
    pre_iters: int = 250
    alter_iters: int = 250
    policy_network_iters: tuple[int, int] = (10, 20)
    policy_lr: float = 0.05          # AutoMTL: 0.01 over ~20k iterations; this schedule is ~80x shorter
    policy_lambda: float = 5e-3      # AutoMTL: 5e-4; stronger so that most draws fit the budget
    post_iters: int = 500
    n_policies: int = 32
    include_argmax: bool = True
    matched_hard_sharing: bool = False  # add hard sharing trained for as many weight steps as AutoMTL
    budget: float = 0.6
    seed: int = 0

    def scaled(self, factor: float) -> CompareSettings:
        """The same run with every iteration count multiplied by ``factor``."""
        s = CompareSettings(**asdict(self))
        for name in ("baseline_iters", "pre_iters", "alter_iters", "post_iters"):
            setattr(s, name, max(2, int(round(getattr(s, name) * factor))))
        return s


QUICK = CompareSettings(tasks=("segment_semantic", "depth_zbuffer"), size=16, n_train=24, n_val=8, n_test=8,
                        batch_size=8, widths=(8, 16), head_channels=8, baseline_iters=4, pre_iters=4,
                        alter_iters=4, policy_network_iters=(1, 1), post_iters=4, n_policies=6, budget=0.9)


@dataclass
class MethodResult:
    """One row of the comparison table."""

    name: str
    params: int
    results: dict[str, dict[str, float]]
    delta_m: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    curve: str | None = None  # history.json of its run


@dataclass
class Comparison:
    """All rows, the single-task parameter total and where the pictures went."""

    settings: CompareSettings
    rows: list[MethodResult]
    single_task_params: int
    policy_picture: Path | None = None
    curves_picture: Path | None = None
    seconds: float = 0.0


def _loaders(s: CompareSettings) -> tuple[dict, dict, dict]:
    from automtl.data.loaders import TaskView
    from automtl.data.synthetic import SyntheticScenes, make_loaders

    train, val = make_loaders(list(s.tasks), s.size, s.n_train, s.n_val, s.batch_size, s.seed)
    scenes = SyntheticScenes(s.n_test, s.size, seed=s.seed, split="test", tasks=s.tasks).prerender()
    test = {t: DataLoader(TaskView(scenes, t), batch_size=s.batch_size) for t in s.tasks}
    return train, val, test


def _model(s: CompareSettings, tasks: list[str]) -> Any:
    from automtl.supernet.registration import build_model

    torch.manual_seed(s.seed)
    return build_model(dict(backbone=dict(type="TinyResNet", widths=s.widths),
                            head=dict(type="ConvHead", mid_channels=s.head_channels),
                            input_shape=(1, 3, s.size, s.size)), tasks)


def _trainer(s: CompareSettings, model: Any, tasks: list[str], train: dict, val: dict, work: Path,
             progress: bool) -> Any:
    from automtl.metrics import default_metrics
    from automtl.train.losses import default_criteria
    from automtl.train.trainer import Trainer

    return Trainer(model, {t: train[t] for t in tasks}, {t: val[t] for t in tasks}, default_criteria(tasks),
                   default_metrics(tasks), work_dir=work, seed=s.seed, checkpoint_iters=100,
                   print_iters=50, progress=progress)


#: the demo's training recipe, tuned on the synthetic scenes before AutoMTL's published
#: optimiser defaults became the Trainer's (those are sized for DeepLab-ResNet34 on real data:
#: with them the quick demo's AutoMTL fell below hard sharing): Adam everywhere, no weight
#: decay, constant rates, the regulariser with sharpness 1 over the policy-layer index
DEMO_WEIGHTS: dict[str, Any] = {"optimizer": {"type": "Adam"}, "weight_decay": 0.0}
DEMO_POLICY_TRAIN: dict[str, Any] = {**DEMO_WEIGHTS, "policy_optimizer": {"type": "Adam"},
                                     "policy_weight_decay": 0.0, "reg_sharpness": 1.0, "reg_depth": "index"}


def run_comparison(settings: CompareSettings, work_dir: str | os.PathLike, *, progress: bool = True,
                   say: Callable[[str], None] = print) -> Comparison:
    """Train single-task baselines, hard sharing and AutoMTL; evaluate all on the test split."""
    from automtl.metrics import Baseline, default_metrics
    from automtl.supernet import Policy
    from automtl.train.policy_sampling import choose_policy, write_choice

    s = settings
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "settings.json", json.dumps(asdict(s), indent=2))
    t_all = time.time()
    tasks = list(s.tasks)
    train, val, test = _loaders(s)
    rows: list[MethodResult] = []

    # 1. one network per task
    single_test, single_val, single_params, t0 = {}, {}, 0, time.time()
    for t in tasks:
        say(f"[1/3] single-task baseline: {t} ({s.baseline_iters} iterations)")
        model = _model(s, [t])
        tr = _trainer(s, model, [t], train, val, work / "single" / t, progress)
        policy = Policy.all(model, "share")
        tr.post_train(s.baseline_iters, s.lr, reload=policy, decay_lr_freq=None, **DEMO_WEIGHTS)
        single_test[t] = tr.validate("fixed", loaders=test)[t]
        single_val[t] = tr.validate("fixed")[t]
        single_params += model.count_params(policy)["total"]
        tr.close()
    metrics = default_metrics(tasks)
    baseline = Baseline.from_metrics(_referable(single_test), metrics, {"split": "test", "iters": s.baseline_iters})
    baseline.save(work / "baseline_test.json")
    val_baseline = Baseline.from_metrics(_referable(single_val), metrics, {"split": "val", "iters": s.baseline_iters})
    val_baseline.save(work / "baseline_val.json")
    rows.append(MethodResult("single-task", single_params, single_test, baseline.delta(single_test),
                             time.time() - t0, str(work / "single" / tasks[0] / "history.json")))

    # 2. hard sharing: every layer shared
    say(f"[2/3] hard sharing ({s.baseline_iters} iterations)")
    t0 = time.time()
    model = _model(s, tasks)
    tr = _trainer(s, model, tasks, train, val, work / "hard_sharing", progress)
    share = Policy.all(model, "share")
    tr.post_train(s.baseline_iters, s.lr, reload=share, decay_lr_freq=None, **DEMO_WEIGHTS)
    res = tr.validate("fixed", loaders=test)
    tr.close()
    rows.append(MethodResult("hard sharing", model.count_params(share)["total"], res, baseline.delta(res),
                             time.time() - t0, str(work / "hard_sharing" / "history.json")))

    # 3. AutoMTL: pre-train, policy-train, sample within budget (scored on val), post-train
    say(f"[3/3] AutoMTL: pre-train {s.pre_iters}, policy-train {s.alter_iters}, "
        f"sample {s.n_policies} within {s.budget:.0%}, post-train {s.post_iters}")
    t0 = time.time()
    model = _model(s, tasks)
    tr = _trainer(s, model, tasks, train, val, work / "automtl", progress)
    tr.pre_train(s.pre_iters, s.lr, **DEMO_WEIGHTS)
    tr.alter_train_with_reg(s.alter_iters, s.policy_network_iters, policy_lr=s.policy_lr, network_lr=s.lr,
                            loss_lambda={"policy": s.policy_lambda}, **DEMO_POLICY_TRAIN)
    report = choose_policy(model, s.n_policies, seed=s.seed, budget=s.budget, val_loaders=val,
                           metrics=default_metrics(tasks), baseline=val_baseline, device=tr.device,
                           include_argmax=s.include_argmax)
    paths = write_choice(report, work / "automtl")
    tr.post_train(s.post_iters, s.lr, reload=report.chosen.policy, decay_lr_freq=None, **DEMO_WEIGHTS)
    res = tr.validate("fixed", loaders=test)
    tr.close()
    rows.append(MethodResult("AutoMTL", report.chosen.params, res, baseline.delta(res), time.time() - t0,
                             str(work / "automtl" / "history.json")))
    if s.matched_hard_sharing:
        steps = automtl_weight_steps(s)
        say(f"[+] hard sharing with AutoMTL's {steps} weight-update steps")
        t0 = time.time()
        model = _model(s, tasks)
        tr = _trainer(s, model, tasks, train, val, work / "hard_sharing_matched", progress)
        tr.post_train(steps, s.lr, reload=Policy.all(model, "share"), decay_lr_freq=None, **DEMO_WEIGHTS)
        res = tr.validate("fixed", loaders=test)
        tr.close()
        shared_params = model.count_params(Policy.all(model, "share"))["total"]
        rows.append(MethodResult(f"hard sharing, {steps} steps", shared_params,
                                 res, baseline.delta(res), time.time() - t0,
                                 str(work / "hard_sharing_matched" / "history.json")))
    comp = Comparison(s, rows, single_params, policy_picture=paths["picture"], seconds=time.time() - t_all)
    comp.curves_picture = plot_curves(comp, work / "curves.png")
    atomic_write_text(work / "comparison.json", json.dumps(
        {"settings": asdict(s), "single_task_params": single_params, "seconds": comp.seconds,
         "rows": [asdict(r) for r in rows]}, indent=2, default=str))
    return comp


def load_comparison(work_dir: str | os.PathLike) -> Comparison:
    """The :class:`Comparison` a finished run saved in ``work_dir/comparison.json``."""
    from automtl.errors import ConfigError

    path = Path(work_dir) / "comparison.json"
    if not path.is_file():
        raise ConfigError("no comparison.json: run the comparison first", path=str(path))
    d = json.loads(path.read_text())
    st = dict(d["settings"])
    for key in ("tasks", "widths", "policy_network_iters"):
        st[key] = tuple(st[key])
    settings = CompareSettings(**{k: v for k, v in st.items() if k in CompareSettings.__dataclass_fields__})
    rows = [MethodResult(**r) for r in d["rows"]]
    return Comparison(settings, rows, int(d["single_task_params"]), Path(work_dir) / "automtl" / "policy.png",
                      Path(work_dir) / "curves.png", float(d["seconds"]))


def automtl_weight_steps(s: CompareSettings) -> int:
    """Weight-update steps of AutoMTL's three phases (pre-train, weight steps of policy-train, post-train)."""
    policy_iters, network_iters = s.policy_network_iters
    alter = sum(1 for i in range(s.alter_iters) if i % (policy_iters + network_iters) < network_iters)
    return s.pre_iters + alter + s.post_iters


def table_rows(comp: Comparison) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: method, params (and % of single-task), primary metric per task, Δm."""
    from automtl.metrics import metric_for_task

    tasks = list(comp.settings.tasks)
    prim = {t: metric_for_task(t).primary for t in tasks}
    header = ["method", "params", "% of single"] + [f"{t} {prim[t]}" for t in tasks] + ["Δm (%)", "time (s)"]
    rows = []
    for r in comp.rows:
        rows.append([r.name, f"{r.params:,}", f"{100 * r.params / comp.single_task_params:.0f}%"]
                    + [f"{r.results[t][prim[t]]:.4g}" for t in tasks]
                    + [f"{r.delta_m.get('delta_m_maninis', 0.0):+.2f}", f"{r.seconds:.0f}"])
    return header, rows


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_curves(comp: Comparison, path: str | os.PathLike) -> Path:
    """Training-loss curves per task: single-task, hard sharing and AutoMTL (pre → policy → post)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tasks = list(comp.settings.tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for row in comp.rows:
            curve = Path(row.curve or "")
            hist_path = curve.parent.parent / task / "history.json" if row.name == "single-task" else curve
            if not hist_path.is_file():
                continue
            hist = json.loads(hist_path.read_text())
            xs, ys, offset = [], [], 0
            for phase in ("pre_train", "alter_train_with_reg", "post_train"):
                pts = hist.get(f"{phase}/loss/{task}", [])
                if not pts:
                    continue
                base = pts[0][0] - 1
                xs += [offset + p[0] - base for p in pts]
                ys += [p[1] for p in pts]
                offset = xs[-1]
            ax.plot(xs, _smooth(ys), label=row.name, lw=1.2)
        ax.set_title(task)
        ax.set_xlabel("weight-update step")
    axes[0][0].set_ylabel("training loss (smoothed)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    finally:
        plt.close(fig)


def _referable(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Results without the metrics a relative difference cannot use (zero or non-finite baseline)."""
    return {t: {k: v for k, v in r.items() if v != 0 and math.isfinite(v)} for t, r in results.items()}


def _smooth(ys: list[float], k: int = 10) -> list[float]:
    out, acc = [], None
    for y in ys:
        acc = y if acc is None else acc + (y - acc) / k
        out.append(acc)
    return out
