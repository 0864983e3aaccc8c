"""``python -m automtl COMMAND``: the command-line entry point (thin; logic lives in the package)."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each command lives in automtl/cli/<module>.py exposing ``add_arguments(parser)`` and ``run(args)``.
# Only the chosen command's module is imported, so ``--help`` and each command start fast.
COMMANDS = {
    "train": ("automtl.cli.train", "train from a config (AutoMTL phases or a supernet for search)"),
    "test": ("automtl.cli.test", "evaluate trained weights (and a policy) of a config on its data"),
    "sample": ("automtl.cli.sample", "draw policies from policy-trained weights within a budget"),
    "search": ("automtl.cli.search", "evolutionary architecture search under a parameter budget (optuna)"),
    "inspect": ("automtl.cli.inspect", "print a backbone's layers, shapes and parameter count"),
    "export": ("automtl.cli.export", "write a torchvision backbone as a Caffe prototxt"),
    "demo": ("automtl.cli.demo", "the main job: AutoMTL vs hard sharing on built-in synthetic data"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="automtl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_path, summary) in COMMANDS.items():
        if name == chosen:
            module = importlib.import_module(module_path)
            module.add_arguments(sub.add_parser(name, help=summary, description=module.__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
        else:
            sub.add_parser(name, help=summary, add_help=False)
    args = parser.parse_args(argv)
    assert module is not None  # argparse rejects unknown commands before this point
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
