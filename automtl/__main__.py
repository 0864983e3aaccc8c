"""``python -m automtl COMMAND``: the command-line entry point (thin; logic lives in the package)."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each command lives in automtl/cli/<module>.py exposing ``add_arguments(parser)`` and ``run(args)``.
COMMANDS = {
    "inspect": "automtl.cli.inspect",
    "demo": "automtl.cli.demo",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="automtl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        modules[name] = module
        sub_parser = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0],
                                    description=module.__doc__)
        module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
