"""Pieces every config-driven command shares: the common options and typed-error reporting."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def add_config_options(parser: argparse.ArgumentParser, *, work_dir: bool = True) -> None:
    """``--cfg-options KEY=VALUE …``, ``--seed``, ``--device`` and (optionally) ``--work-dir``."""
    if work_dir:
        parser.add_argument("--work-dir", help="output folder (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="override config values, e.g. data.data_root=/data/nyuv2 "
                             "pre_train.iters=100 (values are Python literals where they parse)")
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when present)")


def default_work_dir(config: str, given: str | None) -> str:
    """``given`` or ``work_dirs/<config file stem>``."""
    return given or str(Path("work_dirs") / Path(config).stem)


def report_errors(body: Callable[[], int]) -> int:
    """Run ``body``; a typed automtl error is printed as one line and exits with status 2."""
    from automtl.errors import AutoMTLError

    try:
        return body()
    except AutoMTLError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
