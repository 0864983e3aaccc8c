#!/usr/bin/env python
"""Draw policies from policy-trained weights within a budget (thin wrapper of
``python -m automtl sample``; ``--help`` lists the options).

Example:
    python tools/sample_policy.py configs/automtl/synthetic_tinyresnet.py \\
        work_dirs/synthetic_tinyresnet/alter_train_with_reg.pt --n 50 --budget 0.6 --score
"""
import sys

from automtl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
