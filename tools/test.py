#!/usr/bin/env python
"""Evaluate trained weights of a config (thin wrapper of ``python -m automtl test``; ``--help``
lists the options).

Example:
    python tools/test.py configs/automtl/synthetic_tinyresnet.py work_dirs/tiny/post_train.pt --eval mIoU
"""
import sys

from automtl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["test", *sys.argv[1:]]))
