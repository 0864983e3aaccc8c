"""Import time of the packages, each in a fresh interpreter, side by side with ``import torch``
and (``--against REV``) with the same imports in an older revision of this repository.

Rounds are interleaved (every statement once per round, the order rotating) and each figure
is the median over rounds, because one interpreter start on a shared 2-core machine varies
by ±30 %.

    python -m benchmarks.bench_imports --rounds 7 --against 74f0732
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._report import ROOT, table, write_section

STATEMENTS = {
    "import automtl": "import automtl",
    "import search_spaces.vit_mvt": "import search_spaces.vit_mvt",
    "ViT-MVT space built, candidate counted": (
        "from search_spaces.vit_mvt import build_space\n"
        "s = build_space('tiny'); s.count_params(s.largest())"),
    "import automtl.search": "import automtl.search",
    "automtl.search.EvolutionSearch (optuna)": "from automtl.search import EvolutionSearch",
    "import torch (reference)": "import torch",
}


def time_import(code: str, tree: Path) -> float | None:
    """Seconds one fresh interpreter takes to run ``code`` with ``tree`` first on the path
    (None when the statement fails there, e.g. a name that did not exist yet)."""
    probe = ("import time\n_t = time.perf_counter()\n" + code +
             "\nprint(time.perf_counter() - _t)")
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tree, env=env, capture_output=True,
                          text=True)
    return float(proc.stdout.split()[-1]) if proc.returncode == 0 else None


def measure(trees: dict[str, Path], rounds: int) -> dict[tuple[str, str], list[float]]:
    """``{(tree, statement): [seconds per round]}`` over interleaved rounds."""
    out: dict[tuple[str, str], list[float]] = {}
    items = [(t, s) for t in trees for s in STATEMENTS]
    for r in range(rounds):
        shift = r % len(items)
        for tree, name in items[shift:] + items[:shift]:
            sec = time_import(STATEMENTS[name], trees[tree])
            if sec is not None:
                out.setdefault((tree, name), []).append(sec)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--against", default=None, help="also time an older git revision")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    trees = {"now": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            old = Path(tmp) / "old"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.against],
                           cwd=ROOT, check=True)
            trees[args.against] = old
        try:
            times = measure(trees, args.rounds)
        finally:
            if args.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees[args.against])],
                               cwd=ROOT, check=False)
    header = ["statement", "now (s, median)", "spread"]
    if args.against:
        header += [f"{args.against} (s, median)", "now / then"]
    rows = []
    for name in STATEMENTS:
        now = times.get(("now", name), [])
        row: list[object] = [name, f"{statistics.median(now):.3f}" if now else "fails",
                             f"{min(now):.3f}–{max(now):.3f}" if now else ""]
        if args.against:
            then = times.get((args.against, name), [])
            row += [f"{statistics.median(then):.3f}" if then else "fails",
                    f"{statistics.median(now) / statistics.median(then):.3f}x" if now and then else "—"]
        rows.append(row)
    body = (f"Fresh interpreter per statement, {args.rounds} interleaved rounds, medians; one "
            "torch thread.\n\n" + table(header, rows))
    print(body)
    if not args.no_write:
        cmd = "python -m benchmarks.bench_imports --rounds {}{}".format(
            args.rounds, f" --against {args.against}" if args.against else "")
        write_section("imports", "Import time", body, cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
